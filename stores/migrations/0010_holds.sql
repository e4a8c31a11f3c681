-- Legal holds (litigation holds, preservation orders): while one is placed, the systems it covers are restricted
-- instead of erased. A hold names one request, or subjects by keyed pseudonyms only (never an identifier).
CREATE TABLE holds (
    hold_id uuid PRIMARY KEY,
    case_reference text NOT NULL,
    request_id uuid REFERENCES requests (request_id),
    systems text[] NOT NULL DEFAULT '{}',  -- empty: every system
    categories text[] NOT NULL DEFAULT '{}',  -- empty: every data category
    placed_by text NOT NULL,
    placed_at timestamptz NOT NULL,
    released_by text,
    released_at timestamptz
);

CREATE TABLE hold_subjects (
    hold_id uuid NOT NULL REFERENCES holds (hold_id),
    identifier_type text NOT NULL,
    pseudonym text NOT NULL,
    PRIMARY KEY (hold_id, identifier_type, pseudonym)
);
CREATE INDEX hold_subjects_by_pseudonym ON hold_subjects (identifier_type, pseudonym);

-- What a restriction put in place for a request's system (keyed HMACs of the objects), so that the release lifts
-- only what the orchestrator itself restricted.
CREATE TABLE hold_restrictions (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text NOT NULL,
    token bytea NOT NULL,
    PRIMARY KEY (request_id, system, token)
);
