-- Every change of a request's state, with who made it, when and why: the request's timeline. Never an identifier:
-- actors are operator names or "orchestrator", reasons are one line each.
CREATE TABLE request_states (
    id bigserial PRIMARY KEY,
    request_id uuid NOT NULL REFERENCES requests (request_id),
    state text NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX request_states_by_request ON request_states (request_id, id);

-- Requests made before the timeline existed start it with the state they are in.
INSERT INTO request_states (request_id, state, actor, reason, at)
SELECT request_id, state, 'unknown', 'the state when the timeline began', updated_at FROM requests;
