-- What each erasure is about to delete, written before the deletion (or its commit) as keyed HMACs of the keys: a
-- crash between a deletion and its report cannot lose what the receipt commits to. The HMAC key dies with the
-- request's data key.
CREATE TABLE deletion_journal (
    request_id uuid NOT NULL REFERENCES requests (request_id),
    system text NOT NULL,
    leaf bytea NOT NULL,
    PRIMARY KEY (request_id, system, leaf)
);
