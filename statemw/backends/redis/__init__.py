"""redis:// rediss:// unix:// redis+cluster:// — many app servers sharing one Redis (or Valkey).

client.py   the two thin shells (redis.Redis, redis.asyncio.Redis) and open_redis
ops.py      every decision, free of I/O: key layout, script arguments, reply parsing
lua.py      the scripts that do each write atomically on the server
pubsub.py   store.subscribe: a session's channel
faults.py   every connection failure or timeout becomes StoreUnavailable
deadlines.py  the async operations' time limit, watched by one timer per event loop
"""

from statemw.backends.redis.client import open_redis

__all__ = ["open_redis"]
