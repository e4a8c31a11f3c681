-- Deadlines as rules (stores/deadline_rules.yaml): the regime whose rule applies, and the day its clock started.
-- Under UK GDPR Art. 12A a guardian's request has no deadline until the guardian's authority is verified.
ALTER TABLE requests ADD COLUMN regime text;
ALTER TABLE requests ADD COLUMN clock_started_on date;
ALTER TABLE requests ALTER COLUMN deadline DROP NOT NULL;
