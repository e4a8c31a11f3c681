-- Who submitted the request (the operator's name from the configuration or the OS user): its approver must be
-- someone else. Requests stored before it have none.
ALTER TABLE requests ADD COLUMN submitted_by text NOT NULL DEFAULT '';
