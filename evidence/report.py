"""What people read: the HTML report for a DPO or a court, and VERIFY.txt for an auditor.

Neither is evidence: the signed envelopes, the checkpoint and the proofs are. The report says so, and every value
in it is HTML-escaped, since even our own statements must not be able to inject markup into a court's browser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from evidence.batch_receipt import BATCH_RECEIPT_PREDICATE_TYPE
from evidence.bundle import MAX_ENTRIES
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE
from evidence.manifest import MANIFEST_PREDICATE_TYPE
from evidence.statement import CERTIFICATE_PREDICATE_TYPE, RECEIPT_PREDICATE_TYPE

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


def render_report(
    certificate_statement: Mapping[str, Any], superseded: Sequence[tuple[int, str, Mapping[str, Any]]] = ()
) -> str:
    """A self-contained HTML page summarising a certificate Statement (as returned by parse_statement);
    `superseded` are the request's earlier certificates, oldest first: (number, SHA-256 of the envelope, Statement)."""
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
        ("Ledger backups beyond use by", _field(predicate, "ledger_backups_beyond_use_by")),
        ("Days past the deadline", _field(predicate, "days_overdue")),
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
            _supersession(superseded),
            _identity(predicate.get("identity"), predicate.get("reviews")),
            _approval(predicate.get("approval")),
            "<h2>Systems</h2>",
            _systems_table(systems),
            _recipients(predicate.get("recipients")),
            _timeline(predicate.get("timeline"), _field(predicate, "issued_at")),
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
    """VERIFY.txt: how to check the bundle by hand with bash, unzip, jq, openssl 3, sha256sum and python3."""
    keys = "\n".join(f"    {keyid}" for keyid in keyids) or "    (none)"
    return _VERIFY_TEMPLATE.format(
        keys=keys,
        origin=origin,
        max_entries=MAX_ENTRIES,
        payload_type=IN_TOTO_PAYLOAD_TYPE,
        manifest_type=MANIFEST_PREDICATE_TYPE,
        certificate_type=CERTIFICATE_PREDICATE_TYPE,
        receipt_type=RECEIPT_PREDICATE_TYPE,
        batch_receipt_type=BATCH_RECEIPT_PREDICATE_TYPE,
    )


def _headline(outcome: str, systems: Sequence[Mapping[str, Any]]) -> str:
    levels = Counter(str(s.get("evidence_level")) for s in systems)
    if outcome == "complete":
        if set(levels) == {"verified_absent"}:
            return "Complete: every system verified"
        return "Complete: every system done (" + _breakdown(levels) + ")"
    if not systems:
        return "Not complete: no system was processed"
    if outcome == "partial" and not levels["blocked"]:
        return "Not complete: copies remain where a system's erasure could not reach (see the exceptions)"
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


def _supersession(superseded: Sequence[tuple[int, str, Mapping[str, Any]]]) -> str:
    """The certificates this one replaced (a legal hold stopped systems, then was released): this one is current."""
    if not superseded:
        return ""
    header = "<tr><th>Certificate</th><th>Issued</th><th>Outcome</th><th>Exceptions</th><th>SHA-256</th></tr>"
    rows = ""
    for number, sha256, statement in superseded:
        facts: Mapping[str, Any] = statement.get("predicate", {})
        exceptions = escape("; ".join(str(e) for e in facts.get("exceptions", [])))
        rows += (
            f"<tr><td>{number}</td><td>{_field(facts, 'issued_at')}</td><td>{_field(facts, 'outcome')}</td>"
            f"<td>{exceptions}</td><td><code>{escape(sha256)}</code></td></tr>"
        )
    return (
        f"<h2>Supersession</h2><p>This certificate ({len(superseded) + 1}) is current. It supersedes the "
        "certificate(s) below, each in this bundle under <code>superseded/</code> and in the log before it.</p>"
        f'<table class="superseded">{header}{rows}</table>'
    )


def _approval(approval: Any) -> str:
    """Who submitted the request and which second operator approved it after the preview, when."""
    if not isinstance(approval, Mapping) or not approval:
        return ""
    return (
        f"<h2>Approval</h2><p>Submitted by {_field(approval, 'submitted_by')}; located first, then approved by "
        f"{_field(approval, 'approved_by')} at {_field(approval, 'approved_at')} before anything was erased "
        f"(signed record <code>{_field(approval, 'record_sha256')}</code> in the log).</p>"
    )


def _identity(identity: Any, reviews: Any) -> str:
    """How the child's identifiers were found (types and counts, by which source) and what each reviewer decided."""
    if not isinstance(identity, Mapping):
        return ""
    parts = ["<h2>Identity resolution</h2>"]
    found_by = identity.get("found_by")
    if not identity.get("sources") or not isinstance(found_by, Mapping):
        parts.append(f"<p>{_field(identity, 'note')}</p>")
    else:
        parts.append(
            f"<p>Ordered: {_types(identity.get('ordered'))}. Resolved to: {_types(identity.get('identifiers'))} "
            f"(in {_field(identity, 'rounds')} round(s); {_field(identity, 'near_matches')} near-match(es)).</p>"
        )
        rows = "".join(
            f"<tr><td>{escape(str(name))}</td><td>{_types(types)}</td></tr>" for name, types in found_by.items()
        )
        parts.append(
            f"<table><tr><th>Identity source</th><th>Identifiers it holds of the child</th></tr>{rows}</table>"
        )
    decided = [r for r in reviews or [] if isinstance(r, Mapping)]
    if decided:
        columns = ("Group", "Kind", "Source", "Why near", "Decision", "Reason", "Reviewer", "At")
        keys = ("group", "kind", "source", "rules", "decision", "reason", "reviewer", "at")
        header = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
        body = "".join("<tr>" + "".join(f"<td>{_field(r, k)}</td>" for k in keys) + "</tr>" for r in decided)
        parts.append(f"<h2>Review decisions</h2><table>{header}{body}</table>")
    return "".join(parts)


_NOTICE_WORDS = {
    "notified": "told by webhook, which accepted the notice",
    "acknowledged": "told, and acknowledged (recorded by an operator)",
    "not_confirmed": "not confirmed: no acknowledgement within the limit",
    "failed": "not told: the webhook refused or kept failing",
    "not_notified": "not told: the system's erasure is not done",
}


def _recipients(notices: Any) -> str:
    """Who among the recipients of the data was told of the erasure, how and when (GDPR Art. 19)."""
    rows = [n for n in notices or [] if isinstance(n, Mapping)]
    if not rows:
        return ""
    columns = ("System", "Recipient", "Role", "How", "Outcome", "When", "Recorded by", "Reason")
    header = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    body = "".join(
        f"<tr><td>{_field(n, 'system')}</td><td>{_field(n, 'recipient')}</td>"
        f"<td>{_field(n, 'role').replace('_', ' ')}</td><td>{_field(n, 'method')}</td>"
        f"<td>{escape(_NOTICE_WORDS.get(str(n.get('outcome')), str(n.get('outcome'))))}</td>"
        f"<td>{_field(n, 'at')}</td><td>{_field(n, 'actor')}</td><td>{_field(n, 'reason')}</td></tr>"
        for n in rows
    )
    return f"<h2>Recipients told of the erasure</h2><table>{header}{body}</table>"


def _timeline(steps: Any, issued_at: str) -> str:
    """Every state the request went through, in order, with who moved it and when; the certificate ends it."""
    rows = [s for s in steps or [] if isinstance(s, Mapping)]
    if not rows:
        return ""
    header = "<tr><th>State</th><th>At</th><th>By</th><th>Reason</th></tr>"
    body = "".join(
        f"<tr><td>{_field(s, 'state').replace('_', ' ')}</td><td>{_field(s, 'at')}</td>"
        f"<td>{_field(s, 'actor')}</td><td>{_field(s, 'reason')}</td></tr>"
        for s in rows
    )
    body += f"<tr><td>certified</td><td>{issued_at}</td><td>orchestrator</td><td>this certificate</td></tr>"
    return f'<h2>Timeline</h2><table class="timeline">{header}{body}</table>'


def _types(counts: Any) -> str:
    if not isinstance(counts, Mapping) or not counts:
        return "none"
    return escape(", ".join(f"{n} {kind}" for kind, n in counts.items()))


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

Everything below runs offline with standard tools: bash, unzip, jq, openssl 3, sha256sum and python3.
Run the commands in order, in one bash shell, in an empty folder holding this bundle as bundle.zip. Each check
prints a line starting with OK or FAILED: at the first FAILED (or any error) the bundle is not valid, whatever
comes after. Whoever forged a bundle could also rewrite this file: the same commands are in the operator's
documentation (docs/evidence.md), and step 3 shows that this file is the one the operator signed.

The bundle says it is signed by the key id below. That proves nothing: only a key id the operator gave you
separately (for example in a court filing) does.
{keys}
Transparency log: {origin}


0. Set the key id the operator gave you, never one read from this bundle.

```console
TRUSTED_KEYID=<the 64 lower-case hex characters the operator gave you>
```

1. Check the key id, then the zip: no entry with an extra field (which can make another tool see another name),
   only the files of the bundle's layout, each listed once (also ignoring case). Then unpack it.

```sh
export LC_ALL=C
fail() {{ echo "FAILED: $*"; return 1; }}
[[ ${{TRUSTED_KEYID:-}} =~ ^[0-9a-f]{{64}}$ ]] || fail "TRUSTED_KEYID is not 64 lower-case hex characters"
layout='^(manifest\\.dsse\\.json|certificate\\.dsse\\.json|shred\\.dsse\\.json'
layout+='|receipts/[A-Za-z0-9][A-Za-z0-9._-]*(/batch-[0-9]{{6}}|/clean-up)?\\.dsse\\.json'
layout+='|superseded/certificate-[1-9][0-9]*\\.dsse\\.json'
layout+='|log/(checkpoint\\.txt|proofs\\.json|consistency\\.json)|keys/[0-9a-f]{{64}}\\.pem|report\\.html|VERIFY\\.txt)$'
unzip -Zv bundle.zip > zipinfo.txt
if grep -Eq 'length of extra field: +[1-9]' zipinfo.txt; then fail "an entry has an extra field"; fi
unzip -Z1 bundle.zip > entries.txt
[ "$(wc -l < entries.txt)" -le {max_entries} ] || fail "more than {max_entries} entries"
while IFS= read -r entry; do [[ $entry =~ $layout ]] || fail "entry outside the layout: $entry"; done < entries.txt
for entry in manifest.dsse.json certificate.dsse.json log/checkpoint.txt log/proofs.json log/consistency.json \\
  report.html VERIFY.txt; do grep -qxF "$entry" entries.txt || fail "missing entry: $entry"; done
[ -z "$(sort -f entries.txt | uniq -di)" ] || fail "entries listed twice, or whose names differ only in case"
rm -rf bundle && unzip -q bundle.zip -d bundle
[ -z "$(find bundle ! -type f ! -type d)" ] || fail "the unpacked bundle holds links or special files"
(cd bundle && find . -type f | sed 's|^\\./||' | sort) > files.txt
diff <(sort entries.txt) files.txt || fail "the unpacked files are not the zip's entries"
echo "OK the zip holds the bundle's layout and nothing else"
```

2. Check the trusted key: keys/<your key id>.pem must be an Ed25519 public key whose key id (the SHA-256 of the
   raw 32-byte key) is the one you were given. Only this key file is used from here on.

```sh
key="bundle/keys/$TRUSTED_KEYID.pem"
[ -f "$key" ] || fail "the bundle holds no key with the key id you trust"
openssl pkey -pubin -in "$key" -noout -text_pub > key.txt
[ "$(head -n 1 key.txt)" = "ED25519 Public-Key:" ] || fail "$key is not an Ed25519 public key"
[ "$(openssl pkey -pubin -in "$key" -outform DER | tail -c 32 | sha256sum | cut -d' ' -f1)" = "$TRUSTED_KEYID" ] \\
  || fail "$key does not hold the key with that key id"
echo "OK $key is the key you trust"
```

3. Check the manifest: a DSSE envelope signed by the trusted key (Ed25519 over the "PAE" bytes
   DSSEv1 <length of type> <type> <length of payload> <payload>) that lists every other file of the bundle with
   its SHA-256. After this step every file is known to be the one the operator signed, this one included.

```sh
check_envelope() {{  # $1: an envelope of the bundle; its payload is written to $2
  jq -j .payloadType "bundle/$1" > type.txt
  [ "$(cat type.txt)" = "{payload_type}" ] || fail "$1: wrong payload type"
  jq -r .payload "bundle/$1" | base64 -d > "$2"
  jq -r --arg k "$TRUSTED_KEYID" '[.signatures[] | select(.keyid == $k)][0].sig // ""' "bundle/$1" \\
    | base64 -d > sig.bin
  {{ printf 'DSSEv1 %d %s %d ' "$(wc -c < type.txt)" "$(cat type.txt)" "$(wc -c < "$2")"; cat "$2"; }} > pae.bin
  if openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in pae.bin -sigfile sig.bin > /dev/null; then
    echo "OK $1 is signed by the trusted key"
  else fail "$1 is not signed by the trusted key"; fi
}}
subjects() {{  # the subject names of statement $1, each checked against the layout, sorted
  jq -r '.subject[].name' "$1" > names.txt
  [ "$(jq '.subject | length' "$1")" = "$(wc -l < names.txt)" ] || fail "$1: a subject name holds a line break"
  while IFS= read -r name; do [[ $name =~ $layout ]] || fail "$1: subject outside the layout: $name"; done < names.txt
  sort names.txt
}}
digests_match() {{  # every subject of statement $1 has the SHA-256 of its file
  jq -r '.subject[] | .digest.sha256 + "  " + .name' "$1" | (cd bundle && sha256sum --strict --quiet -c -) \\
    || fail "$1: a file's SHA-256 differs from the one listed"
}}
check_envelope manifest.dsse.json manifest.json
[ "$(jq -r .predicateType manifest.json)" = "{manifest_type}" ] || fail "not a bundle manifest"
subjects manifest.json > listed.txt
diff listed.txt <(grep -vx manifest.dsse.json files.txt) || fail "the manifest does not list exactly the bundle's files"
digests_match manifest.json
echo "OK the manifest lists every file of the bundle, byte for byte"
```

4. Check the signed checkpoint of the transparency log: the trusted key signs its first three lines (origin, tree
   size, root hash), in a signature line named after the origin.

```sh
origin=$(head -n 1 bundle/log/checkpoint.txt)
head -n 3 bundle/log/checkpoint.txt > checkpoint-body.txt
[ -z "$(sed -n 4p bundle/log/checkpoint.txt)" ] || fail "the checkpoint has more than three lines of text"
grep -F -- "\u2014 $origin " bundle/log/checkpoint.txt | head -n 1 | cut -d' ' -f3 | base64 -d | tail -c 64 \\
  > checkpoint-sig.bin
if openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in checkpoint-body.txt -sigfile checkpoint-sig.bin \\
  > /dev/null; then echo "OK the checkpoint of log $origin is signed by the trusted key"
else fail "the checkpoint is not signed by the trusted key"; fi
```

5. Check the certificate, every receipt it lists and the shredding receipt if there is one: each signed by the
   trusted key, for the certificate's request; the receipts exactly the certificate's subjects, byte for byte
   (a class order's certificate, whose predicate holds "class", lists one receipt per system and batch, at
   receipts/<system>/batch-NNNNNN.dsse.json, and a Delta table's clean-up receipt at receipts/<system>/clean-up.dsse.json). Then read what the certificate says.

```sh
check_envelope certificate.dsse.json certificate.json
[ "$(jq -r .predicateType certificate.json)" = "{certificate_type}" ] || fail "not a certificate"
[ "$(jq -r .predicate.log_origin certificate.json)" = "$origin" ] || fail "the certificate names another log"
request=$(jq -r .predicate.request_id certificate.json)
receipt_type=$(jq -r 'if .predicate.class then "{batch_receipt_type}" else "{receipt_type}" end' certificate.json)
subjects certificate.json > certified.txt
diff certified.txt <(grep '^receipts/' files.txt) || fail "the receipts are not exactly the certificate's subjects"
digests_match certificate.json
while IFS= read -r receipt; do
  check_envelope "$receipt" receipt.json
  expected=$receipt_type  # a class order's clean-up receipt of a system is an ordinary receipt
  case "$receipt" in */clean-up.dsse.json) expected={receipt_type} ;; esac
  [ "$(jq -r .predicateType receipt.json)" = "$expected" ] || fail "$receipt: not a receipt"
  [ "$(jq -r .predicate.request_id receipt.json)" = "$request" ] || fail "$receipt: for another request"
done < certified.txt
if [ -f bundle/shred.dsse.json ]; then
  check_envelope shred.dsse.json shred.json
  [ "$(jq -r '.predicateType + " " + .predicate.request_id + " " + .predicate.action' shred.json)" \\
    = "{receipt_type} $request shred" ] || fail "shred.dsse.json: not this request's shredding receipt"
  echo "OK this request's data key was destroyed (shred.dsse.json)"
fi
for earlier in $(grep '^superseded/' files.txt); do  # certificates that a later one (the last: this one) replaced
  check_envelope "$earlier" earlier.json
  [ "$(jq -r '.predicateType + " " + .predicate.request_id' earlier.json)" = "{certificate_type} $request" ] \\
    || fail "$earlier: not a certificate of this request"
  echo "OK $earlier is superseded: $(jq -r '.predicate.outcome + ", issued " + .predicate.issued_at' earlier.json)"
done
jq .predicate certificate.json
```

6. Check that the certificate and every receipt are entries of that log (RFC 9162 inclusion proofs: leaf hash
   SHA-256(0x00 || file bytes), node hash SHA-256(0x01 || left || right)), with one proof for each envelope and
   for no other path. Each must print "included".

```sh
(cd bundle && python3 - <<'EOF'
import base64, hashlib, json, os
_, size, root = open("log/checkpoint.txt", encoding="utf-8").read().split("\\n")[:3]
size, root = int(size), base64.b64decode(root)
h = lambda *parts: hashlib.sha256(b"".join(parts)).digest()
receipts = [os.path.join(folder, name) for folder, _, names in os.walk("receipts") for name in names]
envelopes = {{"certificate.dsse.json", *receipts}}
envelopes |= {{"shred.dsse.json"}} if os.path.exists("shred.dsse.json") else set()
envelopes |= {{os.path.join(folder, name) for folder, _, names in os.walk("superseded") for name in names}}
proofs = json.load(open("log/proofs.json"))
if set(proofs) != envelopes:
    raise SystemExit("FAILED: log/proofs.json does not hold exactly one proof per envelope")
failed = False
for path, proof in sorted(proofs.items()):
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
raise SystemExit("FAILED: an envelope is not in the log" if failed else 0)
EOF
)
```

7. Or all of the above, plus the consistency of the log with a checkpoint you kept from an earlier bundle
   (which shows the log was not rewritten or rolled back since), in one command:

```console
erasure evidence verify bundle.zip --trusted-keyid "$TRUSTED_KEYID" [--previous-checkpoint OLD-CHECKPOINT.txt]
```

report.html summarises the certificate for people; it is not itself evidence, though the manifest covers it.
"""
