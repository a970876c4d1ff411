// The demo page: talks to the JSON API; the server keeps all state in the statemw session.
"use strict";
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : {};
  if (!response.ok) {
    showError(data.error || `${response.status} ${response.statusText}`);
    throw new Error(data.error || response.statusText);
  }
  return data;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 4000);
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function renderFacts(list, facts, scope, ages = {}) {
  list.replaceChildren();
  const keys = Object.keys(facts);
  if (!keys.length) list.append(el("p", { class: "none" }, "nothing yet"));
  for (const key of keys) {
    const dt = el("dt", {}, key);
    // How old the fact is (by the server's clock); a stale one may have changed since.
    const age = ages[key] || {};
    if (age.age) {
      const text = age.stale ? `${age.age} · still true?` : age.age;
      const attrs = { class: age.stale ? "age stale" : "age", "data-testid": `age-${scope}-${key}` };
      dt.append(el("small", attrs, text));
    }
    const dd = el("dd", { "data-key": key, "data-scope": scope }, show(facts[key]));
    const edit = el("button", { class: "small", "data-testid": `edit-${scope}-${key}` }, "edit");
    const drop = el("button", { class: "small", "data-testid": `delete-${scope}-${key}` }, "delete");
    edit.onclick = () => editFact(dd, scope, key, facts[key]);
    drop.onclick = async () => render(await api("DELETE", `/api/state/${scope}/${encodeURIComponent(key)}`));
    const actions = el("span", { class: "actions" });
    actions.append(edit, drop);
    list.append(dt, dd, actions);
  }
}

function editFact(dd, scope, key, value) {
  const input = el("input", { value: show(value), "data-testid": `input-${scope}-${key}` });
  dd.replaceChildren(input);
  input.focus();
  input.onkeydown = async (event) => {
    if (event.key !== "Enter") return;
    let parsed = input.value;
    if (typeof value !== "string") { try { parsed = JSON.parse(input.value); } catch { /* keep text */ } }
    render(await api("PUT", `/api/state/${scope}/${encodeURIComponent(key)}`, { value: parsed }));
  };
}

function render(data) {
  const list = $("messages");
  list.replaceChildren();
  if (!data.messages.length) list.append(el("li", { class: "empty" }, "Say hello to start a conversation."));
  for (const m of data.messages) list.append(el("li", { class: m.role }, m.content));
  list.scrollTop = list.scrollHeight;
  const ages = data.ages || {};
  renderFacts($("state"), data.state, "session", ages.session);
  renderFacts($("user-state"), data.user_state, "user", ages.user);
  $("who").textContent = data.user ? `logged in as ${data.user}` : "anonymous";
  $("login-name").hidden = $("login-button").hidden = Boolean(data.user);
  $("logout").hidden = !data.user;
  const context = $("context");
  context.replaceChildren();
  for (const m of data.context.messages) {
    const item = el("li");
    item.append(el("b", {}, `${m.role} `), `${m.tokens} tok: ${show(m.content).slice(0, 80)}`);
    context.append(item);
  }
  $("tokens").textContent = `${data.context.token_count} tokens`;
}

async function refresh() { render(await api("GET", "/api/state")); }

let events;
function listen() {
  // Live updates from the other device: the server pushes an event after each committed change.
  if (events) events.close();
  if (!window.EventSource) return;
  events = new EventSource("/api/events");
  events.onmessage = () => refresh();
}

async function streamChat(text) {
  // The answer arrives word by word; the server logs it when the stream ends.
  const list = $("messages");
  list.querySelector("li.empty")?.remove();
  list.append(el("li", { class: "user" }, text));
  const answer = el("li", { class: "assistant streaming", "data-testid": "streaming" }, "");
  list.append(answer);
  const response = await fetch("/api/chat/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
    credentials: "same-origin",
  });
  if (!response.ok) {
    answer.remove();
    const data = response.headers.get("content-type")?.includes("json") ? await response.json() : {};
    showError(data.error || `${response.status} ${response.statusText}`);
    return refresh();
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    answer.textContent += decoder.decode(value, { stream: true });
    list.scrollTop = list.scrollHeight;
  }
  answer.classList.remove("streaming");
  await refresh();
}

$("composer").onsubmit = async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  await streamChat(text);
  listen();
};
$("login").onsubmit = async (event) => {
  event.preventDefault();
  render(await api("POST", "/api/login", { user: $("login-name").value }));
  listen();
};
$("logout").onclick = async () => { render(await api("POST", "/api/logout")); listen(); };
$("forget").onclick = async () => {
  if (!confirm("Forget this conversation and everything remembered about you?")) return;
  render(await api("POST", "/api/forget"));
};

refresh().then(listen);
