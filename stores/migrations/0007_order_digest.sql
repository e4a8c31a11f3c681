-- A keyed HMAC of the order as validated, kept only while the request is open, so that a resubmission of the same
-- order answers with the open request. Keyed: an unkeyed hash of an order could be confirmed by guessing its
-- identifiers.
ALTER TABLE requests ADD COLUMN order_digest text;
CREATE INDEX requests_by_order_digest ON requests (order_digest) WHERE order_digest IS NOT NULL;
