"""A large keyspace, imported straight into the control plane's SQLite database.

Imported keys may have any format; these are `tgb_<7-digit i>` so load generators can name any of
them. Rows are what the control plane itself stores (control-plane/src/domain/api_key.rs,
control-plane/src/store/sql.rs): `key_hash` is hex(HMAC-SHA256(secret, SHA-256(key))) under the
hex secret in `<data_dir>/key-hash.secret`. The control plane must be stopped while seeding."""

import hashlib
import hmac
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

BATCH_ROWS = 50_000


def key(i: int) -> str:
    return f"tgb_{i:07d}"


def stored_hash(secret: bytes, raw_key: str) -> str:
    digest = hashlib.sha256(raw_key.encode()).digest()
    return hmac.new(secret, digest, hashlib.sha256).hexdigest()


def _timestamp_now() -> str:
    """RFC 3339 UTC with milliseconds, as the control plane writes timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rows(secret: bytes, user_id: str, count: int):
    created_at = _timestamp_now()
    for i in range(count):
        raw = key(i)
        # `k_` and 20 lowercase alphanumerics, like generated key ids.
        key_id = f"k_bench{i:015d}"
        name, prefix, last4, status, scopes = "bench import", "tgb", raw[-4:], "active", "[]"
        yield (key_id, user_id, name, prefix, last4, stored_hash(secret, raw), status, scopes, created_at)


def seed(data_dir: Path, user_id: str, count: int) -> None:
    """Adds `count` active keys owned by `user_id`, in one transaction."""
    secret = bytes.fromhex((data_dir / "key-hash.secret").read_text().strip())
    rows = _rows(secret, user_id, count)
    with sqlite3.connect(data_dir / "tollgate.db") as db:
        db.execute("PRAGMA synchronous = OFF")
        while batch := [row for _, row in zip(range(BATCH_ROWS), rows)]:
            db.executemany(
                "INSERT INTO api_keys (id, user_id, name, prefix, last4, key_hash, status, scopes, "
                "expires_at, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
                batch,
            )
    db.close()
