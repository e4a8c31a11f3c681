"""The payload codec: round trip, rotation, wrong keys, refusal of foreign payloads, and the codec server's token."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from erasure.codec_server import create_app
from stores.codec import ENCODING, CodecError, CodecKeys, EncryptionCodec, data_converter

SECRET = b'{"email": "child@example.org"}'


def plain(data: bytes = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


async def test_round_trip_hides_the_data(tmp_path: Path) -> None:
    codec = CodecKeys(tmp_path).codec()
    [encoded] = await codec.encode([plain()])
    assert encoded.metadata["encoding"] == ENCODING
    assert b"child@example.org" not in encoded.SerializeToString()
    [decoded] = await codec.decode([encoded])
    assert decoded == plain()


async def test_after_rotation_old_payloads_still_decrypt(tmp_path: Path) -> None:
    keys = CodecKeys(tmp_path)
    old = keys.codec()
    [encoded_old] = await old.encode([plain()])
    new_id = keys.rotate()
    rotated = keys.codec()
    [encoded_new] = await rotated.encode([plain()])
    assert encoded_new.metadata["encryption-key-id"] == new_id.encode()
    assert encoded_old.metadata["encryption-key-id"] != new_id.encode()
    assert await rotated.decode([encoded_old, encoded_new]) == [plain(), plain()]


async def test_a_payload_under_another_key_is_refused(tmp_path: Path) -> None:
    [encoded] = await CodecKeys(tmp_path / "a").codec().encode([plain()])
    with pytest.raises(CodecError, match="unknown key"):
        await CodecKeys(tmp_path / "b").codec().decode([encoded])


async def test_a_payload_under_the_same_key_id_but_other_bytes_is_refused(tmp_path: Path) -> None:
    keys, current = CodecKeys(tmp_path).load()
    impostor = EncryptionCodec({current: b"\x00" * 32}, current)
    [encoded] = await impostor.encode([plain()])
    with pytest.raises(CodecError, match="does not decrypt"):
        await EncryptionCodec(keys, current).decode([encoded])


async def test_an_unencrypted_payload_is_refused_not_passed_through(tmp_path: Path) -> None:
    with pytest.raises(CodecError, match="not encrypted"):
        await CodecKeys(tmp_path).codec().decode([plain()])


async def test_failure_messages_are_encrypted_too(tmp_path: Path) -> None:
    from temporalio.api.failure.v1 import Failure

    converter = data_converter(CodecKeys(tmp_path).codec())
    failure = Failure()
    await converter.encode_failure(RuntimeError("child@example.org refused"), failure)
    assert b"child@example.org" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert "child@example.org" in str(decoded)


def asgi_client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec")  # type: ignore[arg-type]


def wire(payload: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


async def test_codec_server_decodes_only_for_the_bearer_token(tmp_path: Path) -> None:
    codec = CodecKeys(tmp_path).codec()
    [encoded] = await codec.encode([plain()])
    client = asgi_client(create_app(codec, "s3cret-token", ["http://127.0.0.1:8233"]))
    body = json.dumps({"payloads": [wire(encoded)]})

    assert (await client.post("/decode", content=body)).status_code == 401
    assert (await client.post("/decode", content=body, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (
        await client.post("/encode", content=body, headers={"Authorization": "Basic s3cret-token"})
    ).status_code == 401

    response = await client.post("/decode", content=body, headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    [decoded] = response.json()["payloads"]
    assert base64.b64decode(decoded["data"]) == SECRET

    encoded_again = (
        await client.post(
            "/encode",
            content=json.dumps({"payloads": [wire(plain())]}),
            headers={"Authorization": "Bearer s3cret-token"},
        )
    ).json()["payloads"][0]
    assert base64.b64decode(encoded_again["metadata"]["encoding"]) == ENCODING


async def test_codec_server_refuses_a_foreign_payload(tmp_path: Path) -> None:
    """A payload marked as ours under a key this deployment does not hold is refused, never shown."""
    [foreign] = await CodecKeys(tmp_path / "other").codec().encode([plain()])
    client = asgi_client(create_app(CodecKeys(tmp_path / "ours").codec(), "t", []))
    response = await client.post(
        "/decode", content=json.dumps({"payloads": [wire(foreign)]}), headers={"Authorization": "Bearer t"}
    )
    assert response.status_code == 400
    assert "unknown key" in response.json()["message"]


async def test_codec_server_shows_a_plain_payload_as_the_history_holds_it(tmp_path: Path) -> None:
    """The SDK writes a `workflow.patched` marker's details unencrypted: the CLI and UI send them with the rest, and a
    refusal would hide the whole history. They are shown as they are (the worker's codec still refuses them)."""
    codec = CodecKeys(tmp_path).codec()
    [ours] = await codec.encode([plain(b'"sealed"')])
    marker = plain(b'"identity-resolution"')
    client = asgi_client(create_app(codec, "t", []))
    response = await client.post(
        "/decode", content=json.dumps({"payloads": [wire(marker), wire(ours)]}), headers={"Authorization": "Bearer t"}
    )
    assert response.status_code == 200
    shown = response.json()["payloads"]
    assert [base64.b64decode(p["data"]) for p in shown] == [b'"identity-resolution"', b'"sealed"']
    with pytest.raises(CodecError, match="not encrypted"):
        await codec.decode([marker])
