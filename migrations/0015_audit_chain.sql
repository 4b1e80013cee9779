-- Tamper evidence: every entry takes the next place in one chain and carries a keyed hash of
-- its columns and the previous entry's hash. `audit_chain` holds the chain's end; every
-- audited write locks its row until commit, so entries join the chain one at a time.
ALTER TABLE audit_log ADD COLUMN seq BIGINT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    head TEXT NOT NULL,
    -- A keyed hash of `seq` and `head`: the end cannot be moved back without the secret.
    seal TEXT NOT NULL,
    -- 0 until the entries written before this migration have joined the chain (at the first
    -- start after it); from then on an entry outside the chain was inserted around it.
    started INTEGER NOT NULL
);
INSERT INTO audit_chain (id, seq, head, seal, started) VALUES (1, 0, '', '', 0);
