"""The export bundle: a directory an auditor can take away and verify offline.

Layout (paths relative to the bundle directory):

    manifest.json           tenant, times, chain head, key ids, and for every other file
                            its SHA-256 and size
    manifest.sig            Ed25519 signature of the exact manifest.json bytes, in the
                            Config-Signature format: kid="…", alg="Ed25519", sig="…"
    signing-keys.json       the public signing keys (JWKS), as GET /api/v1/signing-keys
    versions.jsonl          every profile version: number, kind, reason, digest, values…
    versions/<profile>/<n>.json   the signed config document of that version (exact bytes)
    versions/<profile>/<n>.sig    its Config-Signature header value
    change-requests.jsonl   every change request with its decisions
    audit/events.jsonl      the tenant's audit events with prev_hash and hash
    audit/chain.txt         "<sequence> <hash>" for every event of the global chain
    README.txt              what the bundle proves and what it does not

The audit chain is one chain for every tenant, so a tenant's events are not contiguous.
Each exported event is checked against its own hash, and its prev_hash and hash against
chain.txt; chain.txt must run without a gap from #1 to the head named in the manifest.
What that proves and what it cannot is written in README_TEXT.

Verification needs nothing but this module, the audit chain's hash (audit.chain) and the
`cryptography` package, so the same checks can be rewritten from this description.
"""

import base64
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import GENESIS_HASH, ChainLink, canonical_json

FORMAT = "redline-export/1"
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
KEYS = "signing-keys.json"
VERSIONS = "versions.jsonl"
VERSION_DIR = "versions"
CHANGE_REQUESTS = "change-requests.jsonl"
EVENTS = "audit/events.jsonl"
CHAIN = "audit/chain.txt"
README = "README.txt"
_SIGNATURE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

README_TEXT = """\
Redline export bundle of tenant {tenant}
=========================================

Verify it offline with `manage.py verify_export <this directory>`, adding
`--keys <file>` with the signing keys you obtained from the vendor before (GET
/api/v1/signing-keys) so that the bundle's own copy of the keys is not the only thing
vouching for it. Without --keys the bundle only proves it is intact and self-consistent.

What verification proves
- manifest.json is signed by the key named in manifest.sig; every other file has the
  SHA-256 and size the manifest gives, and no file is missing or added.
- Every profile version document carries a valid Ed25519 signature and its own digest.
- Every audit event of the tenant hashes to the hash it carries; its prev_hash and hash
  equal the entries for its sequence and the one before in audit/chain.txt; chain.txt
  runs from #1 to the head in the manifest without a gap.
- Every version has its profile_version.created event with the same digest, and every
  change request has its change_request.submitted event with the same digest and
  changes, and one decision event for each decision it lists.

What it cannot prove
- The audit chain is shared by all tenants. Events of other tenants appear in
  chain.txt only as hashes, which cannot be recomputed without their contents. So the
  bundle cannot show that no event of this tenant was left out under another tenant's
  name, nor that the chain before the export is the one that was first written.
  Compare the head hash ({head}) with a copy kept elsewhere (a SIEM fed by the audit
  webhook, an earlier export, `verify_audit` on the live system) to anchor it.
- Version documents are rebuilt at export time from the stored versions, with the
  capability catalog of that time; they are signed by the current key.
"""


class BundleProblem(Exception):
    """The first thing in a bundle that does not verify."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def signature_parse(header: str) -> dict[str, str]:
    return dict(_SIGNATURE_PARAM.findall(header or ""))


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signature_check(body: bytes, header: str, keys: dict) -> str | None:
    """None when `header` is a valid Ed25519 signature of `body` by one of the JWKS `keys`,
    else what is wrong."""
    params = signature_parse(header.strip())
    if params.get("alg") != "Ed25519" or "kid" not in params or "sig" not in params:
        return 'the signature is not in the form kid=…, alg="Ed25519", sig=…'
    for jwk in keys.get("keys", []):
        if jwk.get("kid") == params["kid"] and jwk.get("kty") == "OKP":
            try:
                key = Ed25519PublicKey.from_public_bytes(_b64url_decode(jwk["x"]))
                key.verify(_b64url_decode(params["sig"]), body)
            except (InvalidSignature, ValueError, KeyError):
                return f"the signature by key {params['kid']} does not verify"
            return None
    return f"it is signed by key {params['kid']}, which is not among the keys"


# Writing -------------------------------------------------------------------------------------


@dataclass
class BundleWriter:
    """Writes the files of a bundle, digesting each as it goes, then the signed manifest."""

    directory: Path
    files: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.directory = Path(self.directory)
        if self.directory.exists() and any(self.directory.iterdir()):
            raise FileExistsError(f"{self.directory} is not empty; choose a new directory")
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        if not _SAFE_PATH.match(name) or name in (MANIFEST, MANIFEST_SIGNATURE):
            raise ValueError(f"{name!r} cannot be a file of the bundle")
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes(self, name: str, data: bytes) -> None:
        self._path(name).write_bytes(data)
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def write_text(self, name: str, chunks: Iterable[str]) -> int:
        """Stream text (whole lines, one or many per chunk) into a file; returns its lines."""
        digest, size, lines = hashlib.sha256(), 0, 0
        with self._path(name).open("wb") as handle:
            for chunk in chunks:
                data = chunk.encode()
                handle.write(data)
                digest.update(data)
                size += len(data)
                lines += chunk.count("\n")
        self.files[name] = {"sha256": digest.hexdigest(), "bytes": size}
        return lines

    def finish(self, *, manifest: dict, sign: Callable[[bytes], str]) -> dict:
        """Write manifest.json (with the file digests) and its signature."""
        document = {**manifest, "format": FORMAT, "files": dict(sorted(self.files.items()))}
        body = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
        (self.directory / MANIFEST).write_bytes(body)
        (self.directory / MANIFEST_SIGNATURE).write_text(sign(body) + "\n")
        return document


def bundle_tar_chunks(directory: Path, *, name: str) -> Iterator[bytes]:
    """The bundle as an uncompressed tar stream under `name/`, one file at a time."""
    directory = Path(directory)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            archive.add(path, arcname=f"{name}/{path.relative_to(directory).as_posix()}")
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_line(value: dict) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n"


# Verifying -----------------------------------------------------------------------------------


@dataclass
class Verified:
    tenant: str
    files: int
    versions: int
    change_requests: int
    events: int
    chain_head: int
    key_ids: list[str]


def _load_json(directory: Path, name: str):
    path = directory / name
    if not path.is_file():
        raise BundleProblem(f"{name} is missing")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleProblem(f"{name} is not valid JSON: {error}") from None


def _jsonl(directory: Path, name: str) -> Iterator[tuple[int, dict]]:
    with (directory / name).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                value = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                raise BundleProblem(f"{name} line {number} is not valid JSON: {error}") from None
            if not isinstance(value, dict):
                raise BundleProblem(f"{name} line {number} is not a JSON object")
            yield number, value


def bundle_verify(directory: Path, *, trusted_keys: dict | None = None) -> Verified:
    """Check a bundle offline; raises BundleProblem naming the first thing that is wrong."""
    directory = Path(directory)
    keys = _load_json(directory, KEYS)
    if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
        raise BundleProblem(f"{KEYS} is not a JSON Web Key Set")
    body_path = directory / MANIFEST
    if not body_path.is_file():
        raise BundleProblem(f"{MANIFEST} is missing")
    if not (directory / MANIFEST_SIGNATURE).is_file():
        raise BundleProblem(f"{MANIFEST_SIGNATURE} is missing")
    body = body_path.read_bytes()
    header = (directory / MANIFEST_SIGNATURE).read_text(errors="replace")
    if problem := signature_check(body, header, trusted_keys or keys):
        where = "the trusted keys" if trusted_keys else KEYS
        raise BundleProblem(
            f"{MANIFEST_SIGNATURE} over {MANIFEST}: {problem} (checked with {where})"
        )
    manifest = _load_json(directory, MANIFEST)
    if manifest.get("format") != FORMAT:
        raise BundleProblem(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
    listed = manifest.get("files") or {}
    _check_files(directory, listed)
    tenant = manifest["tenant"]
    chain_head = manifest["chain"]["head_sequence"]
    events = _check_events(directory, tenant, manifest["chain"])
    versions = _check_versions(directory, tenant, keys, listed, events)
    requests = _check_change_requests(directory, tenant, events)
    return Verified(
        tenant=tenant,
        files=len(listed),
        versions=versions,
        change_requests=requests,
        events=events.count,
        chain_head=chain_head,
        key_ids=[key.get("kid", "") for key in keys["keys"]],
    )


def _check_files(directory: Path, listed: dict) -> None:
    present = {
        path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()
    } - {MANIFEST, MANIFEST_SIGNATURE}
    for name in sorted(listed):
        if name not in present:
            raise BundleProblem(f"{name} is listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        raise BundleProblem(f"{name} is not listed in the manifest")
    for name, expected in sorted(listed.items()):
        path = directory / name
        if path.stat().st_size != expected["bytes"]:
            raise BundleProblem(
                f"{name} has {path.stat().st_size} bytes; the manifest says {expected['bytes']}"
            )
        if sha256_file(path) != expected["sha256"]:
            raise BundleProblem(f"{name}: its SHA-256 differs from the manifest's")


@dataclass
class _Events:
    count: int = 0
    version_digests: dict[tuple[str, int], str] = field(default_factory=dict)
    submitted: dict[str, dict] = field(default_factory=dict)
    decisions: dict[str, Counter] = field(default_factory=dict)


def _chain_entries(directory: Path) -> Iterator[tuple[int, str]]:
    with (directory / CHAIN).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            parts = raw.decode(errors="replace").split()
            if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
                raise BundleProblem(f"{CHAIN} line {number} is not '<sequence> <hash>'")
            yield int(parts[0]), parts[1]


def _check_events(directory: Path, tenant: str, head: dict) -> _Events:
    """Walk chain.txt and events.jsonl together, both in sequence order."""
    found = _Events()
    chain = _chain_entries(directory)
    previous_sequence, previous_hash = 0, GENESIS_HASH
    for number, event in _jsonl(directory, EVENTS):
        where = f"{EVENTS} line {number}"
        try:
            link = ChainLink(
                sequence=event["sequence"],
                created_at=datetime.fromisoformat(event["created_at"]),
                actor=event["actor"],
                tenant=event["tenant"],
                action=event["action"],
                target=event["target"],
                data=event["data"],
                prev_hash=event["prev_hash"],
            )
            stored_hash = event["hash"]
        except (KeyError, TypeError, ValueError) as error:
            raise BundleProblem(f"{where} is not a complete audit event: {error}") from None
        where = f"audit event #{link.sequence} ({where})"
        if link.tenant != tenant:
            raise BundleProblem(f"{where} belongs to tenant {link.tenant!r}, not {tenant!r}")
        if link.compute_hash() != stored_hash:
            raise BundleProblem(f"{where}: its hash does not match its contents")
        if link.sequence <= previous_sequence:
            raise BundleProblem(f"{where} is out of sequence order")
        for sequence, chained in chain:
            if sequence != previous_sequence + 1:
                raise BundleProblem(
                    f"{CHAIN} jumps from #{previous_sequence} to #{sequence}: events are missing"
                )
            if sequence == link.sequence:
                if link.prev_hash != previous_hash:
                    raise BundleProblem(
                        f"{where}: its prev_hash is not the hash of #{sequence - 1} in {CHAIN}"
                    )
                if chained != stored_hash:
                    raise BundleProblem(f"{where}: its hash is not the one {CHAIN} gives")
                previous_sequence, previous_hash = sequence, chained
                break
            previous_sequence, previous_hash = sequence, chained
        else:
            raise BundleProblem(f"{where} is past the end of {CHAIN}")
        found.count += 1
        _remember(found, link)
    for sequence, chained in chain:
        if sequence != previous_sequence + 1:
            raise BundleProblem(
                f"{CHAIN} jumps from #{previous_sequence} to #{sequence}: events are missing"
            )
        previous_sequence, previous_hash = sequence, chained
    if (previous_sequence, previous_hash) != (head["head_sequence"], head["head_hash"]):
        raise BundleProblem(
            f"{CHAIN} ends at #{previous_sequence}, not at the head the manifest names "
            f"(#{head['head_sequence']})"
        )
    if found.count != head["tenant_events"]:
        raise BundleProblem(
            f"{EVENTS} holds {found.count} events; the manifest says {head['tenant_events']}"
        )
    return found


def _remember(found: _Events, link: ChainLink) -> None:
    """Keep what versions and change requests are checked against."""
    data = link.data if isinstance(link.data, dict) else {}
    if link.action == "profile_version.created" and link.target.startswith("profile:"):
        profile = link.target.removeprefix("profile:").partition("/")[2]
        found.version_digests[(profile, data.get("version"))] = data.get("digest")
    elif link.action == "change_request.submitted":
        found.submitted[link.target] = data
    elif link.action.startswith("decision."):
        verdict = link.action.removeprefix("decision.")
        decided = (link.actor.removeprefix("user:"), verdict, data.get("party"))
        found.decisions.setdefault(link.target, Counter())[decided] += 1


def _check_versions(directory: Path, tenant: str, keys: dict, listed: dict, events) -> int:
    documents = {name for name in listed if name.startswith(f"{VERSION_DIR}/")}
    count = 0
    for number, version in _jsonl(directory, VERSIONS):
        where = f"{VERSIONS} line {number}"
        try:
            profile, n = version["profile"], version["number"]
            name = version["document"]
            signature_name = version["signature"]
        except KeyError as error:
            raise BundleProblem(f"{where} lacks {error}") from None
        label = f"version {n} of profile {profile}"
        for needed in (name, signature_name):
            if needed not in listed:
                raise BundleProblem(f"{where}: {needed} is not in the bundle")
            documents.discard(needed)
        body = (directory / name).read_bytes()
        header = (directory / signature_name).read_text(errors="replace")
        if problem := signature_check(body, header, keys):
            raise BundleProblem(f"{name}: {problem}")
        try:
            document = json.loads(body)
            claimed = document.pop("digest")
        except (ValueError, KeyError, AttributeError):
            raise BundleProblem(f"{name} is not a config document") from None
        digest = "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
        if claimed != digest:
            raise BundleProblem(f"{name}: its digest does not match its contents")
        if (document.get("tenant"), document.get("profile"), document.get("version")) != (
            tenant,
            profile,
            n,
        ):
            raise BundleProblem(f"{name} is not {label} of {tenant}")
        if events.version_digests.get((profile, n)) != version.get("digest"):
            raise BundleProblem(f"{label}: no profile_version.created audit event with its digest")
        count += 1
    for name in sorted(documents):
        raise BundleProblem(f"{name} is not listed in {VERSIONS}")
    return count


def _check_change_requests(directory: Path, tenant: str, events: _Events) -> int:
    count = 0
    for number, request in _jsonl(directory, CHANGE_REQUESTS):
        where = f"{CHANGE_REQUESTS} line {number}"
        target = f"change_request:{request.get('id')}"
        submitted = events.submitted.get(target)
        if request.get("tenant") != tenant:
            raise BundleProblem(f"{where} is not a request of {tenant}")
        if submitted is None:
            raise BundleProblem(f"{where}: no change_request.submitted event for {target}")
        if (submitted.get("digest"), submitted.get("changes")) != (
            request.get("digest"),
            request.get("changes"),
        ):
            raise BundleProblem(f"{where}: its digest or changes differ from its audit event")
        decided = Counter(
            (d.get("reviewer"), d.get("verdict"), d.get("party"))
            for d in request.get("decisions", [])
        )
        if decided != events.decisions.get(target, Counter()):
            raise BundleProblem(f"{where}: its decisions differ from the decision audit events")
        count += 1
    return count
