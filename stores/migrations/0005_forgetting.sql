-- Ledger pseudonyms are now keyed per request by the request's data key (shredding unlinks them). Those made under
-- the former ledger-wide key would link every request, shredded or not, to its subject for good: they go. Nothing
-- reads them; keys/pseudonym.key may be deleted.
DELETE FROM subject_pseudonyms;

-- The suppression list keeps no link to requests: not even the time a subject joined it.
ALTER TABLE suppression DROP COLUMN added_at;

-- Production's suppression key, stored only wrapped by the master key (KMS); one row.
CREATE TABLE suppression_key (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    wrapped_key bytea NOT NULL,
    wrapping text NOT NULL
);
