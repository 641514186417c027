"""Content Credentials (C2PA): every headshot PNG is signed, and any image can be checked.

Built on the official ``c2pa-python`` library (the C2PA SDK, ``c2pa-rs``, underneath):

* :func:`sign_png` adds a signed C2PA manifest to PNG bytes, after ``disclosure`` wrote its text
  fields (the manifest hashes the whole file, so nothing may be written after it). A fresh render says
  ``c2pa.created`` with the IPTC digital source type ``trainedAlgorithmicMedia``; a refine or a variation
  says ``c2pa.opened`` (its source headshot, added as the parent ingredient, whose own manifest comes
  along) then ``c2pa.edited`` (``trainedAlgorithmicMedia``); a LinkedIn crop adds ``c2pa.cropped``. Each
  names the software, its version and the style, and when. Nothing personal: no file names, no
  embeddings, no selfies, no prompt, no thumbnail.
* The signing key: a deployer's certificate chain and key (``HEADSHOT_C2PA_CERT``, ``HEADSHOT_C2PA_KEY``:
  the PEM text, or a path to a PEM file), else a small chain of our own (a root CA and a signer
  certificate) made on first start and kept in ``<cache>/c2pa``. Validators call the latter an
  "unknown signer": it proves the file is unchanged since this app signed it, not who runs the app.
  :func:`startup_check` says at start which key signs, or why none can; a missing or broken key never
  fails a render (the PNG is handed out unsigned, with its IPTC metadata).
* :func:`verify` reads any image's credentials: valid or not (tampered), ours or not, when, and the
  chain of actions (the parents' first), or plainly that it has none (a screenshot, a re-saved JPEG).

Settings: ``HEADSHOT_C2PA`` (``off`` disables signing), ``HEADSHOT_C2PA_CERT``, ``HEADSHOT_C2PA_KEY``,
``HEADSHOT_C2PA_TSA_URL`` (an RFC 3161 time-stamp authority, optional).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headshot import __version__, config, errors
from headshot.disclosure import DIGITAL_SOURCE_TYPE, SOFTWARE

log = logging.getLogger(__name__)

ENV_SWITCH = "HEADSHOT_C2PA"
ENV_CERT = "HEADSHOT_C2PA_CERT"
ENV_KEY = "HEADSHOT_C2PA_KEY"
ENV_TSA = "HEADSHOT_C2PA_TSA_URL"

FOLDER = "c2pa"  # under config.cache_dir(): the self-made chain
ROOT_FILE, CHAIN_FILE, KEY_FILE = "root-ca.pem", "signer-chain.pem", "signer-key.pem"
ROOT_DAYS, SIGNER_DAYS, RENEW_DAYS = 20 * 365, 5 * 365, 30
ORGANISATION = "Headshot Studio (self-signed)"

TITLE = "AI-generated headshot"  # the manifest's title: never the file's name
PARENT_TITLE = "source headshot"
PARENT_ID = "parent"
MAX_VERIFY_BYTES = config.MAX_UPLOAD_BYTES
TAMPER_CODES = ("mismatch", "claimSignature.missing", "assertion.missing")
KINDS = {  # settings["kind"] -> what the edit says
    "refine": "Refined: upscaled and re-rendered at a higher resolution by the model",
    "more_like_this": "A variation rendered by the model from the source headshot",
}


# --------------------------------------------------------------------------------------
# The key: a deployer's, or a chain of our own
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """What signs: the PEM chain (signer first), its private key, the algorithm and where it came from."""

    chain_pem: bytes
    key_pem: bytes
    alg: str  # "es256", "es384", "es512", "ps256", "ed25519"
    source: str  # "self-made" or "deployer"
    anchor_pem: bytes  # the top certificate of the chain: what "ours" is checked against
    serial: str  # the signer certificate's serial number, lower-case hex
    issuer: str  # its issuer's organisation (or common name)
    tsa_url: str | None = None

    def describe(self) -> str:
        if self.source == "deployer":
            return f"the deployer's certificate (issuer {self.issuer!r})"
        return "a self-made certificate (validators show 'unknown signer')"


@dataclass(frozen=True)
class Status:
    """The signing state after :func:`load`: a key, or None and the reason in ``message``."""

    key: SigningKey | None
    message: str
    problem: bool = False  # True when something a deployer set (or the cache) is wrong


class KeyProblem(errors.HeadshotError):
    """A certificate or key that cannot sign."""

    code = "c2pa_key"


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "on").strip().lower() not in ("0", "off", "false", "no")


def _env_pem(name: str) -> bytes | None:
    """A PEM setting: the PEM text itself (a Space secret), or a path to a PEM file."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").encode()
    path = Path(value).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyProblem(
            f"{name} is neither PEM text nor a readable file ({exc.strerror}: {path})."
        ) from None


def _alg_for(private_key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(private_key.curve.name)
        if alg:
            return alg
        raise KeyProblem(
            f"The key's curve {private_key.curve.name} cannot sign C2PA (use P-256, P-384 or P-521)."
        )
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "ps256"
    raise KeyProblem(
        f"A {type(private_key).__name__} cannot sign C2PA: use an EC (P-256), Ed25519 or RSA key."
    )


def _name_of(name) -> str:
    from cryptography.x509.oid import NameOID

    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        found = name.get_attributes_for_oid(oid)
        if found:
            return str(found[0].value)
    return name.rfc4514_string()


def check_key(chain_pem: bytes, key_pem: bytes, source: str, tsa_url: str | None = None) -> SigningKey:
    """The chain and key as a :class:`SigningKey`, checked: they parse, belong together, are in date,
    and ``c2pa-python`` signs a small PNG with them. :class:`KeyProblem` says what is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise KeyProblem(f"The certificate is not a PEM certificate chain ({exc}).") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(f"The private key is not an unencrypted PEM key ({exc}).") from None
    leaf = certs[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != private_key.public_key().public_bytes(serialization.Encoding.DER, public):
        raise KeyProblem("The private key does not belong to the first certificate of the chain.")
    now = datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise KeyProblem(
            f"The signing certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}, not today."
        )
    key = SigningKey(
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs),
        key_pem=key_pem,
        alg=_alg_for(private_key),
        source=source,
        anchor_pem=certs[-1].public_bytes(serialization.Encoding.PEM),
        serial=format(leaf.serial_number, "x"),
        issuer=_name_of(leaf.issuer),
        tsa_url=tsa_url,
    )
    try:  # the library's own verdict: C2PA has its own certificate rules (key usage, extended key usage)
        _sign_with(key, _probe_png(), _actions("generate", "probe", None, crop=False), parent=None)
    except Exception as exc:  # any failure of the library is a key problem here
        raise KeyProblem(f"c2pa-python refuses this certificate or key: {exc}") from None
    return key


def _probe_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_chain(folder: Path) -> tuple[Path, Path, Path]:
    """A small chain of our own in ``folder``: a root CA (P-256, 20 years) and a signer certificate it
    issues (P-256, 5 years; digital signature, e-mail protection: what C2PA asks of a signer). Returns
    the root, the signer chain and the signer key files (the key readable by this user only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(
        "Headshot Studio root CA",
        None,
        root_key,
        root_key,
        now,
        ROOT_DAYS,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(key_cert_sign=True, crl_sign=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False),
        ],
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate(
        "Headshot Studio signer",
        root,
        signer_key,
        root_key,
        now,
        SIGNER_DAYS,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
            (x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False),
        ],
    )
    pem = serialization.Encoding.PEM
    _write_private(
        folder,
        {
            ROOT_FILE: root.public_bytes(pem),
            CHAIN_FILE: signer.public_bytes(pem) + root.public_bytes(pem),
            KEY_FILE: signer_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        },
    )
    return folder / ROOT_FILE, folder / CHAIN_FILE, folder / KEY_FILE


def _certificate_name(common: str):
    """Our certificates' subject: the organisation and ``common``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _key_usage(**allowed: bool):
    """An X.509 key usage with only ``allowed`` set."""
    from cryptography import x509

    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**{**flags, **allowed})


def _certificate(common: str, issuer, key, issuer_key, now, days: int, extensions: list):
    """A certificate named ``common`` for ``key``, issued by ``issuer`` (None: self-signed) and signed with
    ``issuer_key`` (SHA-256), valid from an hour before ``now`` for ``days``, with ``extensions``
    ((extension, critical) pairs) in that order."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    subject = _certificate_name(common)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_private(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name: bytes) into ``folder``, each whole or not at all, none world-readable."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{threading.get_ident()}"
    for file_name, data in files.items():
        tmp = folder / f".{file_name}.{tag}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, folder / file_name)


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """One process at a time makes or reads the chain (two starting together would mix their files)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, the check after making it still catches a mix-up
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _self_made(tsa_url: str | None) -> tuple[SigningKey, str]:
    """Our own chain from the cache folder, made (again) when missing, unreadable or near its end."""
    folder = config.cache_dir() / FOLDER
    with _folder_lock(folder):
        return _self_made_locked(folder, tsa_url)


def _self_made_locked(folder: Path, tsa_url: str | None) -> tuple[SigningKey, str]:
    note = ""
    chain_file, key_file = folder / CHAIN_FILE, folder / KEY_FILE
    if chain_file.is_file() and key_file.is_file():
        try:
            key = check_key(chain_file.read_bytes(), key_file.read_bytes(), "self-made", tsa_url)
            if _days_left(key) > RENEW_DAYS:
                return key, f"the self-made certificate in {folder}"
            note = " (the previous one was about to expire)"
        except (KeyProblem, OSError) as exc:
            note = f" (the previous one could not be used: {exc})"
    make_chain(folder)
    key = check_key(chain_file.read_bytes(), key_file.read_bytes(), "self-made", tsa_url)
    return key, f"a self-made certificate, made now in {folder}{note}"


def _days_left(key: SigningKey) -> float:
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(key.chain_pem)[0]
    return (leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def load() -> Status:
    """Find the key to sign with (see the module's docstring), check it, and say what happened."""
    if not enabled():
        return Status(None, f"Content Credentials are off ({ENV_SWITCH}=off): headshots are not signed.")
    tsa_url = os.environ.get(ENV_TSA, "").strip() or None
    problem = ""
    try:
        chain_pem, key_pem = _env_pem(ENV_CERT), _env_pem(ENV_KEY)
        if chain_pem and key_pem:
            key = check_key(chain_pem, key_pem, "deployer", tsa_url)
            return Status(key, f"Content Credentials: signing with {key.describe()}.")
        if chain_pem or key_pem:
            given, missing = (ENV_CERT, ENV_KEY) if chain_pem else (ENV_KEY, ENV_CERT)
            raise KeyProblem(f"{given} is set but {missing} is not: both are needed.")
    except KeyProblem as exc:
        problem = f"The deployer's signing key cannot be used: {exc.message} "
    try:
        key, where = _self_made(tsa_url)
    except (KeyProblem, OSError) as exc:
        detail = exc.message if isinstance(exc, KeyProblem) else str(exc)
        return Status(
            None,
            f"{problem}Content Credentials are OFF: no certificate could be made in "
            f"{config.cache_dir() / FOLDER} ({detail}). Headshots are still made, unsigned.",
            problem=True,
        )
    if problem:
        return Status(key, f"{problem}Signing with {where} instead.", problem=True)
    return Status(key, f"Content Credentials: signing with {where} (validators show 'unknown signer').")


_STATUS: Status | None = None
_LOCK = threading.Lock()


def status(reload: bool = False) -> Status:
    """The signing state, loaded once per process (``reload`` loads it again, after a setting changed)."""
    global _STATUS
    with _LOCK:
        if _STATUS is None or reload:
            _STATUS = load()
        return _STATUS


def startup_check() -> Status:
    """Load the key at start and say which signs, or why none can (a warning: renders go on unsigned)."""
    state = status()
    sys.stderr.write(("⚠️ " if state.problem or state.key is None else "") + state.message + "\n")
    sys.stderr.flush()
    return state


# --------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _agent() -> dict:
    return {"name": SOFTWARE, "version": __version__}


def _actions(kind: str, style: str, parent: Path | None, *, crop: bool) -> list[dict]:
    """The action chain: created by the model, or opened (the parent) then edited by it; then cropped."""
    when = _now()
    made = {
        "digitalSourceType": DIGITAL_SOURCE_TYPE,
        "softwareAgent": _agent(),
        "when": when,
        "parameters": {"style": style},
    }
    if parent is None:
        actions = [
            {"action": "c2pa.created", **made, "description": f"Rendered by the model in the style {style!r}"}
        ]
    else:
        actions = [
            {"action": "c2pa.opened", "when": when, "parameters": {"ingredientIds": [PARENT_ID]}},
            {"action": "c2pa.edited", **made, "description": KINDS.get(kind, "Re-rendered by the model")},
        ]
    if crop:
        crop_action = {"action": "c2pa.cropped", "when": when, "softwareAgent": _agent()}
        actions.append({**crop_action, "description": "Square crop around the face, for a profile photo"})
    return actions


_SIGN_SETTINGS = {
    "version": 1,
    "builder": {"thumbnail": {"enabled": False}},  # no copy of the picture inside its own manifest
    "verify": {"verify_after_sign": False},  # the tests read every kind back; a render need not
}
_CONTEXT: Any = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        import c2pa

        _CONTEXT = c2pa.Context.from_dict(_SIGN_SETTINGS)
    return _CONTEXT


def _sign_with(key: SigningKey, data: bytes, actions: list[dict], parent: Path | None) -> bytes:
    import c2pa

    manifest = {
        "claim_generator_info": [_agent()],
        "title": TITLE,
        "format": "image/png",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(key.alg, key.chain_pem, key.key_pem, key.tsa_url))
    try:
        with c2pa.Builder(manifest, context=_context()) as builder:
            if parent is not None:
                with open(parent, "rb") as source:
                    builder.add_ingredient(
                        {"title": PARENT_TITLE, "relationship": "parentOf", "label": PARENT_ID},
                        "image/png",
                        source,
                    )
            out = io.BytesIO()
            builder.sign(signer, "image/png", io.BytesIO(data), out)
            return out.getvalue()
    finally:
        signer.close()


def sign_png(
    data: bytes,
    *,
    style: str,
    kind: str = "generate",
    parent: str | os.PathLike | None = None,
    crop: bool = False,
) -> bytes:
    """``data`` (a PNG, its metadata written) with a signed C2PA manifest, or ``data`` unchanged when
    signing is off or fails (logged: a render never fails for its credentials).

    ``kind`` is the recipe's (``generate``, ``refine``, ``more_like_this``); ``parent``, the source
    headshot of a refine or a variation; ``crop``, a LinkedIn crop of the render."""
    key = status().key
    if key is None:
        return data
    parent_path = Path(parent) if parent is not None else None
    try:
        return _sign_with(key, data, _actions(kind, style, parent_path, crop=crop), parent_path)
    except Exception as exc:  # never a failed render for the credentials
        log.warning("Content Credentials: could not sign a headshot (%s); it is handed out unsigned.", exc)
        return data


def signer_for(
    *, style: str, kind: str = "generate", parent: str | os.PathLike | None = None, crop: bool = False
) -> Callable[[bytes], bytes]:
    """:func:`sign_png` with its options bound: what ``disclosure.save_png(..., finish=...)`` takes."""
    return lambda data: sign_png(data, style=style, kind=kind, parent=parent, crop=crop)


# --------------------------------------------------------------------------------------
# Reading: what an image's credentials say
# --------------------------------------------------------------------------------------


def _reader_context(key: SigningKey | None):
    import c2pa

    settings: dict = {"version": 1, "verify": {"verify_trust": True, "remote_manifest_fetch": False}}
    if key is not None:
        settings["trust"] = {"user_anchors": key.anchor_pem.decode()}
    return c2pa.Context.from_dict(settings)


def _read_bytes(source: str | os.PathLike | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            if path.stat().st_size > MAX_VERIFY_BYTES:
                raise errors.ImageTooLarge(
                    f"This file is over {MAX_VERIFY_BYTES >> 20} MB: check a headshot as it was downloaded."
                )
            data = path.read_bytes()
        except OSError as exc:
            raise errors.UnreadableImage(f"This file could not be read ({exc.strerror}).") from None
    if len(data) > MAX_VERIFY_BYTES:
        raise errors.ImageTooLarge(f"This file is over {MAX_VERIFY_BYTES >> 20} MB.")
    return data


def _action_summary(action: dict) -> dict:
    agent = action.get("softwareAgent")
    software = agent.get("name") if isinstance(agent, dict) else agent
    if isinstance(agent, dict) and agent.get("version") and str(agent["version"]) not in str(software):
        software = f"{software} {agent['version']}"
    out = {"action": action.get("action"), "when": action.get("when"), "software": software}
    source_type = action.get("digitalSourceType")
    if source_type:
        out["digital_source_type"] = source_type.rsplit("/", 1)[-1]
    if action.get("description"):
        out["description"] = action["description"]
    return {k: v for k, v in out.items() if v is not None}


def _manifest_actions(manifest: dict) -> list[dict]:
    actions: list[dict] = []
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions += [_action_summary(a) for a in assertion.get("data", {}).get("actions", [])]
    return actions


def _history(store: dict, label: str | None, seen: set[str]) -> list[dict]:
    """The manifests from the oldest parent to ``label``, each with its actions (parents first)."""
    if not label or label in seen or label not in store.get("manifests", {}):
        return []
    seen.add(label)
    manifest = store["manifests"][label]
    steps: list[dict] = []
    for ingredient in manifest.get("ingredients", []):
        if ingredient.get("relationship") == "parentOf":
            steps += _history(store, ingredient.get("active_manifest"), seen)
    generator = manifest.get("claim_generator_info") or [{}]
    steps.append(
        {
            "manifest": label,
            "software": " ".join(str(generator[0].get(k, "")) for k in ("name", "version")).strip() or None,
            "signed_by": (manifest.get("signature_info") or {}).get("issuer"),
            "actions": _manifest_actions(manifest),
        }
    )
    return steps


def verify(source: str | os.PathLike | bytes) -> dict:
    """What an image's Content Credentials say, read by ``c2pa-python``.

    ``status``: ``valid`` (a manifest whose signature and hashes check out), ``tampered`` (a manifest,
    but the picture or the manifest changed after signing), ``invalid`` (a manifest that fails another
    check), ``none`` (no credentials: a screenshot, a re-saved copy) or ``unsupported`` (not a format
    that carries them). With a manifest: ``ours`` (signed with this app's key), ``ai_generated``,
    ``made`` (the first time this file's own manifest names), ``signed_by``, ``history`` (the manifests
    from the oldest parent to this file, each with its actions), ``problems`` (the failed checks) and
    ``message``."""
    import c2pa

    data = _read_bytes(source)
    key = status().key if enabled() else None
    base = {
        "status": "none",
        "valid": False,
        "ours": False,
        "ai_generated": False,
        "history": [],
        "problems": [],
    }
    try:
        reader = c2pa.Reader.try_create(None, io.BytesIO(data), None, _reader_context(key))
    except c2pa.C2paError as exc:
        if isinstance(exc, c2pa.C2paError.NotSupported):
            return {
                **base,
                "status": "unsupported",
                "message": "This file is not an image format that carries Content Credentials.",
            }
        return {
            **base,
            "status": "invalid",
            "problems": [{"code": "unreadable", "explanation": str(exc)}],
            "message": f"This file's Content Credentials could not be read: {exc}",
        }
    if reader is None:
        return {
            **base,
            "message": (
                "No Content Credentials: this image carries no C2PA manifest (a screenshot, a copy re-saved by "
                "another app, or an image from elsewhere). Nothing can be said about where it came from."
            ),
        }
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state() or ""
        results = reader.get_validation_results() or {}
    return {**base, **_verdict(store, state, results, key)}


def _verdict(store: dict, state: str, results: dict, key: SigningKey | None) -> dict:
    """:func:`verify`'s answer for an image with a manifest, from what ``c2pa.Reader`` read: its manifest
    store (JSON), its validation state and results; ``key``: this app's signing key (None: signing is off)."""
    label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(label, {})
    failures = (results.get("activeManifest") or {}).get("failure", [])
    problems = [
        {"code": f.get("code"), "explanation": f.get("explanation")}
        for f in failures
        if f.get("code") != "signingCredential.untrusted"
    ]
    signature = manifest.get("signature_info") or {}
    history = _history(store, label, set())
    actions = [a for step in history for a in step["actions"]]
    valid = state in ("Valid", "Trusted") and not problems
    ours = bool(
        valid
        and key is not None
        and state == "Trusted"
        and str(signature.get("cert_serial_number", "")).strip()
        and _serial_hex(signature.get("cert_serial_number")) == key.serial
    )
    tampered = any(any(t in str(p["code"]) for t in TAMPER_CODES) for p in problems)
    status_ = "valid" if valid else "tampered" if tampered else "invalid"
    ai = any(
        a.get("digital_source_type") in ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
        for a in actions
    )
    # When this file was made: its own manifest's first action (its parents' are in the history).
    made = next((a.get("when") for a in (history[-1]["actions"] if history else []) if a.get("when")), None)
    return {
        "status": status_,
        "valid": valid,
        "ours": ours,
        "ai_generated": ai,
        "made": made,
        "signed_at": signature.get("time"),
        "signed_by": signature.get("issuer"),
        "signer_name": signature.get("common_name"),
        "manifest": label,
        "history": history,
        "problems": problems,
        "message": _message(status_, ours, ai, made, signature.get("issuer"), history, problems),
    }


def readable_time(when: str | None) -> str:
    """An ISO 8601 time as "2026-12-07 15:21 UTC" (as given when it does not parse)."""
    try:
        moment = datetime.datetime.fromisoformat(str(when))
    except ValueError:
        return str(when or "")
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def _serial_hex(value: Any) -> str:
    text = str(value).strip().lower()
    try:
        return format(int(text), "x") if text.isdigit() else format(int(text, 16), "x")
    except ValueError:
        return text


def _message(
    status_: str, ours: bool, ai: bool, made, issuer, history: list[dict], problems: list[dict]
) -> str:
    if status_ == "tampered":
        return (
            "⚠️ Tampered: this image carries Content Credentials, but the picture or its credentials changed "
            "after they were signed, so they no longer describe it."
        )
    if status_ == "invalid":
        first = problems[0]["explanation"] if problems else "a check failed"
        return f"⚠️ Invalid Content Credentials: {first}."
    who = (
        "signed by this app (Headshot Studio)"
        if ours
        else f"signed by {issuer!r}, not by this app's key"
        if issuer
        else "signed by an unknown signer"
    )
    chain = " → ".join(
        a["action"].removeprefix("c2pa.") for step in history for a in step["actions"] if a.get("action")
    )
    parts = [f"✅ Valid Content Credentials, {who}."]
    if ai:
        parts.append("It says the image was made by AI (trainedAlgorithmicMedia).")
    if made:
        parts.append(f"Made {readable_time(made)}.")
    if chain:
        parts.append(f"History: {chain}.")
    return " ".join(parts)
