-- Counts per location (a table, a key template, an audience) before and after, for the receipts.
ALTER TABLE system_tasks ADD COLUMN counts_before jsonb, ADD COLUMN counts_after jsonb;
