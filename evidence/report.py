"""What people read: the HTML report for a DPO or a court, and VERIFY.txt for an auditor.

Neither is evidence: the signed envelopes, the checkpoint and the proofs are. The report says so, and every value
in it is HTML-escaped, since even our own statements must not be able to inject markup into a court's browser.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from evidence.dsse import IN_TOTO_PAYLOAD_TYPE

GLOSSARY = {
    "verified_absent": "We looked again ourselves after deleting and found nothing of the child.",
    "vendor_attested": "The vendor reported that deletion finished (signed, where the vendor signs).",
    "accepted": "The vendor accepted the deletion request but offers no way to check that it finished.",
    "blocked": "Deletion is not allowed now (a legal hold or a retention lock); the data is restricted instead.",
    "failed": "The system refused or kept failing; a person must act.",
}
_LEVEL_WORDS = {
    "verified_absent": "verified by us",
    "vendor_attested": "confirmed by the vendor",
    "accepted": "accepted by the vendor without a way to check",
    "blocked": "blocked by a legal hold or retention lock",
    "failed": "failed",
}
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #bbb; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.outcome { font-size: 1.25rem; font-weight: 600; padding: .6rem .8rem; border-radius: .3rem; }
.complete { background: #e6f4ea; } .partial { background: #fff4e0; } .incomplete { background: #fde8e8; }
.note { color: #555; font-size: .9rem; }
"""


def render_report(certificate_statement: Mapping[str, Any]) -> str:
    """A self-contained HTML page summarising a certificate Statement (as returned by parse_statement)."""
    predicate: Mapping[str, Any] = certificate_statement.get("predicate", {})
    systems = [s for s in predicate.get("systems", []) if isinstance(s, Mapping)]
    outcome = str(predicate.get("outcome", "incomplete"))
    request = _field(predicate, "request_id")
    facts = [
        ("Request", request),
        ("Kind", _field(predicate, "kind").replace("_", " ")),
        ("Legal basis", _field(predicate, "legal_basis")),
        ("Reference", _field(predicate, "jurisdiction_reference")),
        ("Received", _field(predicate, "received_at")),
        ("Deadline", _field(predicate, "deadline")),
        ("Certificate issued", _field(predicate, "issued_at")),
    ]
    exceptions = [str(e) for e in predicate.get("exceptions", [])]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Erasure certificate {request}</title><style>{_STYLE}</style></head><body>",
            f"<h1>Erasure certificate</h1><p>Request <code>{request}</code></p>",
            f'<p class="outcome {escape(outcome)}">{escape(_headline(outcome, systems))}</p>',
            f"<p>{_field(predicate, 'outcome_reason')}</p>",
            "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>",
            _exceptions(exceptions),
            "<h2>Systems</h2>",
            _systems_table(systems),
            "<h2>What the evidence levels mean</h2>",
            "<dl>" + "".join(f"<dt><code>{k}</code></dt><dd>{escape(v)}</dd>" for k, v in GLOSSARY.items()) + "</dl>",
            "<h2>How this can be checked</h2>",
            f"<p>Every receipt and this certificate are entries of the transparency log "
            f"<code>{_field(predicate, 'log_origin')}</code>, whose signed checkpoint is in this bundle.</p>",
            '<p class="note">This page is a summary and is not itself evidence. The signed files in this bundle are: '
            "see VERIFY.txt to check them with standard tools, offline.</p>",
            "</body></html>",
            "",
        ]
    )


def verify_instructions(keyids: Sequence[str], origin: str) -> str:
    """VERIFY.txt: how to check the bundle by hand with unzip, jq, openssl 3, sha256sum and python3."""
    keys = "\n".join(f"    {keyid}" for keyid in keyids) or "    (none)"
    return _VERIFY_TEMPLATE.format(
        keys=keys,
        origin=origin,
        payload_type=IN_TOTO_PAYLOAD_TYPE,
        signature_line=shlex.quote(f"\u2014 {origin} "),
    )


def _headline(outcome: str, systems: Sequence[Mapping[str, Any]]) -> str:
    levels = Counter(str(s.get("evidence_level")) for s in systems)
    if outcome == "complete":
        if set(levels) == {"verified_absent"}:
            return "Complete: every system verified"
        return "Complete: every system done (" + _breakdown(levels) + ")"
    if not systems:
        return "Not complete: no system was processed"
    if outcome == "partial":
        return f"Not complete: {_count(levels['blocked'], 'system')} blocked by a legal hold or retention lock"
    return f"Not complete: {_count(levels['failed'], 'system')} failed and a person must act"


def _breakdown(levels: Counter[str]) -> str:
    return ", ".join(f"{n} {_LEVEL_WORDS.get(level, level)}" for level, n in sorted(levels.items()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _exceptions(exceptions: Sequence[str]) -> str:
    if not exceptions:
        return ""
    return "<h2>Exceptions</h2><ul>" + "".join(f"<li>{escape(e)}</li>" for e in exceptions) + "</ul>"


def _systems_table(systems: Sequence[Mapping[str, Any]]) -> str:
    columns = ("System", "Category", "Evidence level", "Records before", "Records after")
    header = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    rows = "".join(
        f"<tr><td>{_field(s, 'system')}</td><td>{_field(s, 'category')}</td>"
        f"<td><code>{_field(s, 'evidence_level')}</code></td>"
        f'<td class="n">{_field(s, "records_before")}</td><td class="n">{_field(s, "records_after")}</td></tr>'
        for s in systems
    )
    return f"<table>{header}{rows}</table>"


def _field(document: Mapping[str, Any], key: str) -> str:
    """The escaped value, or a dash where there is none (a count a vendor does not report, say)."""
    value = document.get(key)
    return "\u2014" if value is None or value == "" else escape(str(value))


_VERIFY_TEMPLATE = """\
HOW TO VERIFY THIS ERASURE EVIDENCE BUNDLE
==========================================

Everything below runs offline with standard tools: unzip, jq, openssl 3, sha256sum and python3.
Run the commands in order, in one bash shell, in a folder holding this bundle as bundle.zip.
The one-command check is in step 7.

Signing keys of this bundle (key id = SHA-256 of the raw 32-byte Ed25519 public key):
{keys}
Transparency log: {origin}


1. Unpack the bundle.

```sh
unzip -q bundle.zip -d bundle && cd bundle
```

2. Check the keys. The keys in keys/ travel with the bundle, so anyone could have replaced them. Each line
   printed must equal a key id the operator gave you separately (for example in a court filing), and the
   file's name.

```sh
for key in keys/*.pem; do
  echo "$key: $(openssl pkey -pubin -in "$key" -outform DER | tail -c 32 | sha256sum | cut -d' ' -f1)"
done
```

3. Check the signature on the certificate and on every receipt. Each is a DSSE envelope: the signature is
   Ed25519 over the "PAE" bytes  DSSEv1 <length of type> <type> <length of payload> <payload>.
   Each file must print "Signature Verified Successfully".

```sh
check_envelope() {{
  jq -j .payloadType "$1" > type.txt
  jq -r .payload "$1" | base64 -d > payload.bin
  jq -r '.signatures[0].sig' "$1" | base64 -d > sig.bin
  [ "$(cat type.txt)" = "{payload_type}" ] || {{ echo "$1: wrong payload type"; return 1; }}
  {{ printf 'DSSEv1 %d %s %d ' "$(wc -c < type.txt)" "$(cat type.txt)" "$(wc -c < payload.bin)"
    cat payload.bin; }} > pae.bin
  echo "$1:"
  openssl pkeyutl -verify -pubin -inkey "keys/$(jq -r '.signatures[0].keyid' "$1").pem" \\
    -rawin -in pae.bin -sigfile sig.bin
}}
for envelope in certificate.dsse.json receipts/*.dsse.json; do check_envelope "$envelope"; done
```

4. Check that the certificate covers exactly these receipts, unchanged. The certificate lists each receipt
   with the SHA-256 of its file: every line must say OK, and the diff must print nothing.

```sh
jq -r .payload certificate.dsse.json | base64 -d > certificate.json
jq -r '.subject[] | .digest.sha256 + "  " + .name' certificate.json | sha256sum -c -
diff <(jq -r '.subject[].name' certificate.json | sort) <(ls receipts/*.dsse.json | sort)
jq .predicate certificate.json
```

5. Check the signed checkpoint of the log: the signature covers its first three lines (origin, tree size,
   root hash). A key must print "checkpoint signed by".

```sh
head -n 3 log/checkpoint.txt > checkpoint-body.txt
grep -F -- {signature_line} log/checkpoint.txt | head -n 1 | cut -d' ' -f3 | base64 -d | tail -c 64 \\
  > checkpoint-sig.bin
signed=no
for key in keys/*.pem; do
  if openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in checkpoint-body.txt -sigfile checkpoint-sig.bin \\
    > /dev/null 2>&1; then echo "checkpoint signed by $key"; signed=yes; fi
done
[ "$signed" = yes ] || {{ echo "checkpoint NOT signed by any key in keys/"; false; }}
```

6. Check that the certificate and every receipt are entries of that log (RFC 9162 inclusion proofs: leaf hash
   SHA-256(0x00 || file bytes), node hash SHA-256(0x01 || left || right)). Each must print "included".

```sh
python3 - <<'EOF'
import base64, hashlib, json
_, size, root = open("log/checkpoint.txt", encoding="utf-8").read().split("\\n")[:3]
size, root = int(size), base64.b64decode(root)
h = lambda *parts: hashlib.sha256(b"".join(parts)).digest()
failed = False
for path, proof in sorted(json.load(open("log/proofs.json")).items()):
    fn, sn, r = proof["leaf_index"], proof["tree_size"] - 1, h(b"\\0", open(path, "rb").read())
    for p in map(bytes.fromhex, proof["hashes"]):  # RFC 9162, section 2.1.3.2
        if sn == 0:  # a proof longer than the path fails
            r = b""
            break
        if fn & 1 or fn == sn:
            r = h(b"\\1", p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\\1", r, p)
        fn, sn = fn >> 1, sn >> 1
    ok = proof["tree_size"] == size and sn == 0 and r == root
    print(path, "included" if ok else "NOT INCLUDED")
    failed = failed or not ok
raise SystemExit(1 if failed else 0)
EOF
```

7. Or all of the above, plus the consistency of the log with a checkpoint you kept from an earlier bundle
   (which shows the log was not rewritten or rolled back since), in one command:

```console
erasure evidence verify bundle.zip --trusted-key KEY.pem [--previous-checkpoint OLD-CHECKPOINT.txt]
```

report.html summarises the certificate for people; it is not itself evidence.
"""
