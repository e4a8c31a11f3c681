"""The stores: catalogue and orders (files), ledger, vault, transparency log, keys, pseudonyms, codec. Import only the domain and evidence."""
