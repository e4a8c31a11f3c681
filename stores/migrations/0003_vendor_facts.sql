-- The vendor's answers reduced to typed facts (counts, enumerated words, validated ids), for the receipts.
ALTER TABLE system_tasks ADD COLUMN vendor_facts jsonb NOT NULL DEFAULT '{}';
