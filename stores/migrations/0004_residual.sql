-- Where the subject's data remains although a system's own erasure is done (e.g. a Segment destination that cannot
-- delete): named in the receipt and the certificate, and the request is then not complete.
ALTER TABLE system_tasks ADD COLUMN residual jsonb;
