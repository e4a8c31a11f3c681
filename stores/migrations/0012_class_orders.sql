-- Class orders (issue 13): what the ledger keeps of a class is its size and the Merkle root over its subjects'
-- per-request pseudonyms (the list itself is sealed in the vault); each (system, batch) is one row of progress and
-- counts, its subjects named only by the Merkle root of their pseudonyms.
CREATE TABLE class_orders (
    request_id uuid PRIMARY KEY REFERENCES requests (request_id),
    subject_count integer NOT NULL CHECK (subject_count > 0),
    merkle_root bytea NOT NULL,
    source text NOT NULL,              -- "file" or "class:<name>"
    cutoff date,                       -- the class's cutoff date, for a class from the catalogue
    snapshot_at timestamptz NOT NULL,  -- when the subjects were resolved
    paused boolean NOT NULL DEFAULT false
);

CREATE TABLE class_batches (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text NOT NULL,
    batch integer NOT NULL,
    subjects integer NOT NULL,
    batch_root bytea NOT NULL,
    state text NOT NULL,               -- planned, running, done
    evidence_level text,
    records_before integer,
    records_after integer,
    counts_before jsonb,
    counts_after jsonb,
    deleted integer,
    blocked integer NOT NULL DEFAULT 0,
    key_commitment text,
    key_count integer NOT NULL DEFAULT 0,
    detail text NOT NULL DEFAULT '',
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (request_id, system, batch)
);
