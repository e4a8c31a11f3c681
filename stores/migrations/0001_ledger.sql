-- The orchestrator's own records. No table holds an identifier in plain text or under an unkeyed hash:
-- subjects appear as keyed HMAC pseudonyms; identifiers live only in vault_items, encrypted per request.

CREATE TABLE requests (
    request_id uuid PRIMARY KEY,
    kind text NOT NULL,
    legal_basis text NOT NULL,
    reference text NOT NULL,
    requester jsonb NOT NULL,
    received_on date NOT NULL,
    deadline date NOT NULL,
    scope jsonb NOT NULL,
    catalogue jsonb NOT NULL,
    catalogue_sha256 text NOT NULL,
    state text NOT NULL,
    outcome text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subject_pseudonyms (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    identifier_type text NOT NULL,
    pseudonym text NOT NULL,
    PRIMARY KEY (request_id, identifier_type, pseudonym)
);

CREATE TABLE system_tasks (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text NOT NULL,
    category text NOT NULL,
    connector text NOT NULL,
    state text NOT NULL,
    evidence_level text,
    records_before integer,
    records_after integer,
    deleted integer,
    blocked integer NOT NULL DEFAULT 0,
    key_commitment text,
    key_count integer NOT NULL DEFAULT 0,
    vendor_job_id text,
    vendor_status text,
    detail text NOT NULL DEFAULT '',
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, system)
);

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text,
    kind text NOT NULL,
    event_key text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_id, event_key)
);

-- The vault: one data key per request, wrapped by the master key; destroying it shreds the request.
CREATE TABLE vault_keys (
    request_id uuid PRIMARY KEY REFERENCES requests (request_id),
    wrapped_key bytea,
    wrapping text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz
);

CREATE TABLE vault_items (
    request_id uuid NOT NULL REFERENCES vault_keys (request_id),
    name text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    PRIMARY KEY (request_id, name)
);

-- The transparency log (RFC 9162): leaves in order, and the hashes of every complete perfect subtree.
CREATE TABLE tlog_leaves (
    leaf_index bigint PRIMARY KEY,
    leaf_hash bytea NOT NULL,
    entry bytea NOT NULL,
    appended_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tlog_nodes (
    level integer NOT NULL,
    node_index bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, node_index)
);

-- A single row serialises appends so that concurrent workers never fork the tree.
CREATE TABLE tlog_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint NOT NULL
);
INSERT INTO tlog_head (size) VALUES (0);

CREATE TABLE tlog_checkpoints (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL,
    note text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

-- Signed statements: one per system and action, and one certificate per request; each is a log leaf.
CREATE TABLE receipts (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text NOT NULL,
    action text NOT NULL,
    envelope bytea NOT NULL,
    sha256 text NOT NULL,
    leaf_index bigint NOT NULL REFERENCES tlog_leaves (leaf_index),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, system, action)
);

-- Keyed hashes of erased subjects' identifiers, under a long-lived key of their own: refuses re-ingestion.
CREATE TABLE suppression (
    identifier_type text NOT NULL,
    digest text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (identifier_type, digest)
);
