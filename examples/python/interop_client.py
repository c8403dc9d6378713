#!/usr/bin/env python3
"""guildhall interop client, written from docs/PROTOCOL.md and proto/ only.

1. Rebuilds every signing-envelope test vector of PROTOCOL.md section 7 from the
   document's rules and checks bytes and signatures against the hex in the document.
2. With --server, registers a fresh identity on a running node, calls GetMyData,
   logs in again and checks that replaying the Login is refused (UNAUTHENTICATED).

Exit status is non-zero on any mismatch.
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import struct
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_DOC = REPO / "docs" / "PROTOCOL.md"
DEFAULT_PROTO = REPO / "proto"


class Mismatch(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Mismatch(what)


# --------------------------------------------------------------------------
# Section 1/2: keys, encodings and the signing envelope
# --------------------------------------------------------------------------

PREFIX = b"guildhall-sig-v1"  # 16 ASCII bytes, no length prefix
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def raw_pub(sk: Ed25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pub_hex(sk: Ed25519PrivateKey) -> str:
    return raw_pub(sk).hex()  # lowercase


def lp(x: bytes) -> bytes:
    return struct.pack(">I", len(x)) + x


# Field encoders (before lp). Each returns the encoded field value.
def f_str(s: str) -> bytes:
    return s.encode("utf-8")


def f_u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def f_bool(b: bool) -> bytes:
    return b"\x01" if b else b"\x00"


def f_key(k) -> bytes:
    """A key: its 32 raw bytes. Accepts raw bytes or the lowercase hex spelling."""
    if isinstance(k, str):
        check(HEX64.match(k) is not None, f"key must be 64 lowercase hex chars: {k!r}")
        k = bytes.fromhex(k)
    check(len(k) == 32, "key must be 32 bytes")
    return k


def f_repeated_str(items) -> bytes:
    return struct.pack(">I", len(items)) + b"".join(lp(f_str(i)) for i in items)


def f_opt(value, enc) -> bytes:
    """proto3 optional: absent -> empty string; present -> 0x01 || encoding."""
    if value is None:
        return b""
    return b"\x01" + enc(value)


def envelope(label: str, *fields: bytes) -> bytes:
    return PREFIX + lp(label.encode("ascii")) + b"".join(lp(f) for f in fields)


# --------------------------------------------------------------------------
# Section 3: the signed kinds
# --------------------------------------------------------------------------

def sb_device_cert(k_id, k_dev, device_id: str, issued_at: int, expiry: int) -> bytes:
    return envelope("device-cert", f_key(k_id), f_key(k_dev), f_str(device_id),
                    f_u64(issued_at), f_u64(expiry))


def sb_id_proof(audience, k_id, timestamp: int) -> bytes:
    return envelope("id-proof", f_key(audience), f_key(k_id), f_u64(timestamp))


def sb_register(audience, k_id, k_dev, display_name: str, device_name, timestamp: int) -> bytes:
    return envelope("register", f_key(audience), f_key(k_id), f_key(k_dev),
                    f_str(display_name), f_opt(device_name, f_str), f_u64(timestamp))


def sb_homeserver_move(k_id, new_homeserver: str, timestamp: int) -> bytes:
    return envelope("homeserver-move", f_key(k_id), f_str(new_homeserver), f_u64(timestamp))


def sb_login(audience, k_id, k_dev, device_name, new_homeserver, migration_timestamp,
             migration_signature, migration_targets, timestamp: int) -> bytes:
    return envelope("login", f_key(audience), f_key(k_id), f_key(k_dev),
                    f_opt(device_name, f_str), f_opt(new_homeserver, f_str),
                    f_opt(migration_timestamp, f_u64), f_opt(migration_signature, f_str),
                    f_repeated_str(migration_targets), f_u64(timestamp))


def sb_update_user(k_id, k_dev, name, avatar_url, presence_preference, bio, guild_order,
                   is_profile_synced, irc_name, timestamp: int) -> bytes:
    return envelope("update-user", f_key(k_id), f_key(k_dev), f_opt(name, f_str),
                    f_opt(avatar_url, f_str), f_opt(presence_preference, f_u64),
                    f_opt(bio, f_str), f_opt(guild_order, f_str),
                    f_opt(is_profile_synced, f_bool), f_opt(irc_name, f_str), f_u64(timestamp))


def sb_verify_user(audience, k_id, timestamp: int) -> bytes:
    return envelope("verify-user", f_key(audience), f_key(k_id), f_u64(timestamp))


def sb_join_invite(audience, k_id, k_dev, token, display_name, avatar_url, homeserver_url,
                   timestamp: int) -> bytes:
    return envelope("join-invite", f_key(audience), f_key(k_id), f_key(k_dev), f_str(token),
                    f_str(display_name), f_str(avatar_url), f_str(homeserver_url),
                    f_u64(timestamp))


def sb_s2s_request(audience, origin_key, origin: str, method: str, body: bytes, timestamp: int,
                   nonce: bytes) -> bytes:
    """Section 8: the body hash is SHA-256 of the HTTP body as sent (one gRPC frame)."""
    import hashlib
    check(len(nonce) == 16, "nonce must be 16 bytes")
    return envelope("s2s-request", f_key(audience), f_key(origin_key), f_str(origin),
                    f_str(method), hashlib.sha256(body).digest(), f_u64(timestamp), nonce)


def sb_server_key_rotation(old_key, new_key, new_key_valid_until: int, timestamp: int) -> bytes:
    return envelope("server-key-rotation", f_key(old_key), f_key(new_key),
                    f_u64(new_key_valid_until), f_u64(timestamp))


def sb_ban(origin, banned, guild_id: str, reason: str, evidence_hash: str, timestamp: int) -> bytes:
    return envelope("ban", f_key(origin), f_key(banned), f_str(guild_id), f_str(reason),
                    f_str(evidence_hash), f_u64(timestamp))
def sb_homeserver_move_v2(k_id, new_homeserver: str, timestamp: int, sequence: int,
                          prev: bytes) -> bytes:
    """Section 12: prev is SHA-256 of the previous statement's signing bytes, empty for the first."""
    check(len(prev) in (0, 32), "prev must be empty or 32 bytes")
    return envelope("homeserver-move-v2", f_key(k_id), f_str(new_homeserver), f_u64(timestamp),
                    f_u64(sequence), prev)


def sb_device_revocation(k_id, k_dev, timestamp: int) -> bytes:
    return envelope("device-revocation", f_key(k_id), f_key(k_dev), f_u64(timestamp))


def sb_dm_invite(audience, k_id, k_dev, target, token: str, guild_id: str,
                 host_server_url: str, timestamp: int) -> bytes:
    return envelope("dm-invite", f_key(audience), f_key(k_id), f_key(k_dev), f_key(target),
                    f_str(token), f_str(guild_id), f_str(host_server_url), f_u64(timestamp))


def sb_server_event(origin_key, kind: str, sequence: int, timestamp: int, payload: bytes) -> bytes:
    return envelope("server-event", f_key(origin_key), f_str(kind), f_u64(sequence),
                    f_u64(timestamp), payload)


# --------------------------------------------------------------------------
# Section 7: test vectors
# --------------------------------------------------------------------------

def parse_doc_vectors(doc: Path) -> dict:
    """Read the ```vector blocks of PROTOCOL.md: label -> {signer, signing_bytes, signature}."""
    text = doc.read_text(encoding="utf-8")
    out = {}
    for block in re.findall(r"```vector\n(.*?)```", text, re.S):
        cur, fields = None, {}
        for line in block.splitlines():
            m = re.match(r"^(\w+):\s*(.*)$", line)
            if m:
                cur = m.group(1)
                fields[cur] = m.group(2).strip()
            elif cur and line.strip():
                fields[cur] += line.strip()  # hex wrapped at 64 chars: join the lines
        out[fields["label"]] = fields
    return out


def check_vectors(doc: Path) -> None:
    print(f"== test vectors from {doc}")
    vectors = parse_doc_vectors(doc)
    k_id = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    k_dev = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    server = Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
    second = Ed25519PrivateKey.from_private_bytes(b"\x04" * 32)
    keys = {"K_id": k_id, "K_dev": k_dev, "server": server}

    # The key table.
    for name, sk, want in [
        ("K_id", k_id, "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"),
        ("K_dev", k_dev, "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"),
        ("server", server, "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1"),
        ("second", second, "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c"),
    ]:
        check(pub_hex(sk) == want, f"public key of {name}: got {pub_hex(sk)}, doc {want}")
        print(f"  key {name:<6} public key matches")

    T, EXPIRY = 1767225600000, 1798761600000
    KI, KD, AUD = raw_pub(k_id), raw_pub(k_dev), raw_pub(server)
    built = {}
    built["device-cert"] = ("K_id", sb_device_cert(KI, KD, "phone", T, EXPIRY))
    built["id-proof"] = ("K_id", sb_id_proof(AUD, KI, T))
    built["register"] = ("K_dev", sb_register(AUD, KI, KD, "Ada Lovelace", "Phone", T))
    built["homeserver-move"] = ("K_id", sb_homeserver_move(KI, "https://new.example", T))
    move_sig_hex = k_id.sign(built["homeserver-move"][1]).hex()
    built["login"] = ("K_dev", sb_login(
        AUD, KI, KD, None, "https://new.example", T, move_sig_hex,
        ["https://old.example", "https://other.example"], T))
    built["update-user"] = ("K_dev", sb_update_user(
        KI, KD, "Ada", "", None, "hi", None, True, None, T))
    built["verify-user"] = ("K_id", sb_verify_user(AUD, KI, T))
    built["join-invite"] = ("K_dev", sb_join_invite(
        AUD, KI, KD, "0123456789abcdef", "Ada", "", "https://home.example", T))
    SECOND = raw_pub(second)
    built["s2s-request"] = ("server", sb_s2s_request(
        SECOND, AUD, "https://a.example", "/guildhall.v1.GuildHall/VerifyUser",
        bytes.fromhex("00000000020a00"), T, b"\x5a" * 16))
    built["server-key-rotation"] = ("server", sb_server_key_rotation(AUD, SECOND, EXPIRY, T))
    built["ban"] = ("server", sb_ban(
        AUD, KI, "123456789", "spam",
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", T))
    built["homeserver-move-v2"] = ("K_id", sb_homeserver_move_v2(
        KI, "https://new.example", T, 2, b"\xab" * 32))
    built["device-revocation"] = ("K_id", sb_device_revocation(KI, KD, T))
    built["dm-invite"] = ("K_dev", sb_dm_invite(
        SECOND, KI, KD, SECOND, "0123456789abcdef", "42", "https://a.example", T))
    built["server-event"] = ("server", sb_server_event(AUD, "test-note", 7, T, b"hello"))

    check(set(vectors) == set(built),
          f"vector labels in doc {sorted(vectors)} != kinds built {sorted(built)}")
    failed = []
    for label, (signer, sb) in built.items():
        v = vectors[label]
        sig = keys[signer].sign(sb)
        ok_signer = v.get("signer") == signer
        ok_bytes = sb.hex() == v["signing_bytes"]
        ok_sig = sig.hex() == v["signature"]
        status = "OK" if (ok_signer and ok_bytes and ok_sig) else "MISMATCH"
        print(f"  vector {label:<16} signer={signer:<5} bytes={'ok' if ok_bytes else 'DIFF'} "
              f"sig={'ok' if ok_sig else 'DIFF'}  {status}")
        if not ok_bytes:
            print(f"    built: {sb.hex()}\n    doc:   {v['signing_bytes']}")
        if status != "OK":
            failed.append(label)
        if label == "verify-user":
            challenge = f"{T}:{sig.hex()}"
            print(f"    verify-user challenge = {challenge[:40]}...")
    check(not failed, f"vectors mismatched: {failed}")
    print(f"  all {len(built)} vectors match")


# --------------------------------------------------------------------------
# gRPC: stubs generated at run time
# --------------------------------------------------------------------------

def load_stubs(proto_root: Path, outdir: str):
    import importlib
    import grpc_tools
    from grpc_tools import protoc

    wk = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_root}", f"-I{wk}",
        f"--python_out={outdir}", f"--grpc_python_out={outdir}",
        str(proto_root / "guildhall" / "v1" / "guildhall.proto"),
        # guildhall.proto imports Harmony's ProfileUpdated for its event stream.
        str(proto_root / "protocol" / "profile" / "v1" / "profile.proto"),
        str(proto_root / "protocol" / "harmonytypes" / "v1" / "types.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    sys.path.insert(0, outdir)
    pb2 = importlib.import_module("guildhall.v1.guildhall_pb2")
    pb2_grpc = importlib.import_module("guildhall.v1.guildhall_pb2_grpc")
    return pb2, pb2_grpc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_client(server: str, proto_root: Path) -> None:
    import grpc

    print(f"== live client against {server}")
    m = re.match(r"^(https?)://([^/]+)/?$", server)
    check(m is not None, f"--server must look like http://host:port, got {server!r}")
    scheme, target = m.groups()

    with tempfile.TemporaryDirectory(prefix="guildhall-py-stubs-") as tmp:
        pb2, pb2_grpc = load_stubs(proto_root, tmp)
        channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials())
                   if scheme == "https" else grpc.insecure_channel(target))
        stub = pb2_grpc.GuildHallStub(channel)

        # 1. Keys and a device certificate.
        k_id = Ed25519PrivateKey.generate()
        k_dev = Ed25519PrivateKey.generate()
        kid_hex, kdev_hex = pub_hex(k_id), pub_hex(k_dev)
        issued = now_ms()
        expiry = issued + 30 * 24 * 3600 * 1000
        device_id = "py-" + secrets.token_hex(4)
        cert = pb2.DeviceCert(
            pubkey=kdev_hex, device_id=device_id, issued_at=issued, expiry=expiry,
            signature=k_id.sign(sb_device_cert(kid_hex, kdev_hex, device_id, issued, expiry)).hex())
        print(f"  [keys]      K_id={kid_hex}\n              K_dev={kdev_hex} device_id={device_id}")

        # 2. Audience.
        info = stub.GetServerInfo(pb2.Empty(), timeout=10)
        audience = info.server_pubkey
        check(HEX64.match(audience) is not None, f"server_pubkey not 64 lowercase hex: {audience!r}")
        print(f"  [info]      server_pubkey={audience} version={info.version!r} peer_id={info.peer_id}")

        # 3. Register.
        ts = now_ms()
        device_name = "Python"
        reg = pb2.RegisterRequest(
            display_name="Py Client", public_key=kid_hex, device_cert=cert,
            id_proof=k_id.sign(sb_id_proof(audience, kid_hex, ts)).hex(),
            device_name=device_name,
            signature=k_dev.sign(sb_register(audience, kid_hex, kdev_hex, "Py Client",
                                             device_name, ts)),
            timestamp=ts)
        r = stub.Register(reg, timeout=10)
        check(HEX64.match(r.token) is not None, f"Register token not 64 hex: {r.token!r}")
        check(HEX64.match(r.refresh_token) is not None, "Register refresh_token not 64 hex")
        check(r.user.id == kid_hex, f"Register user.id {r.user.id} != K_id {kid_hex}")
        print(f"  [register]  OK user.id={r.user.id} name={r.user.name!r} "
              f"token={r.token[:8]}... refresh={r.refresh_token[:8]}...")

        # 4. GetMyData with the bearer token.
        md = stub.GetMyData(pb2.Empty(), metadata=[("authorization", f"Bearer {r.token}")],
                            timeout=10)
        check(md.user.id == kid_hex, f"GetMyData user.id {md.user.id} != {kid_hex}")
        print(f"  [getmydata] OK user.id={md.user.id} name={md.user.name!r} "
              f"devices={len(md.device_certificates)}")

        # 5. Login with the same device, a new timestamp, user_id set.
        lts = max(now_ms(), ts + 1)
        login = pb2.LoginRequest(
            device_cert=cert, timestamp=lts, user_id=kid_hex,
            signature=k_dev.sign(sb_login(audience, kid_hex, kdev_hex, None, None, None, None,
                                          [], lts)))
        lr = stub.Login(login, timeout=10)
        check(HEX64.match(lr.token) is not None, "Login token not 64 hex")
        check(HEX64.match(lr.refresh_token) is not None, "Login refresh_token not 64 hex")
        check(lr.user.id == kid_hex, f"Login user.id {lr.user.id} != {kid_hex}")
        check(lr.token != r.token, "Login returned the Register token again")
        print(f"  [login]     OK user.id={lr.user.id} token={lr.token[:8]}...")
        md2 = stub.GetMyData(pb2.Empty(), metadata=[("authorization", f"Bearer {lr.token}")],
                             timeout=10)
        check(md2.user.id == kid_hex, "GetMyData with the Login token returned another user")
        print("  [getmydata] OK with the Login token")

        # 6. Replay the exact same Login request.
        try:
            stub.Login(login, timeout=10)
        except grpc.RpcError as e:
            code, msg = e.code(), e.details()
            print(f"  [replay]    refused: {code.name} {msg!r}")
            check(code == grpc.StatusCode.UNAUTHENTICATED,
                  f"replayed Login: expected UNAUTHENTICATED, got {code.name}")
            check(msg.startswith("signature"),
                  f"replayed Login: message should start with the field at fault "
                  f"('signature: already used'), got {msg!r}")
        else:
            raise Mismatch("replayed Login was accepted")
        print("  live checks passed")
        channel.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", help="node gRPC address, e.g. http://127.0.0.1:50051")
    ap.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="path to PROTOCOL.md")
    ap.add_argument("--proto", type=Path, default=DEFAULT_PROTO, help="proto include root")
    args = ap.parse_args()
    try:
        check_vectors(args.doc)
        if args.server:
            run_client(args.server, args.proto)
        else:
            print("(no --server given: skipped the live client)")
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # grpc.RpcError and friends
        if hasattr(e, "code") and callable(e.code):
            print(f"FAIL: RPC error {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        raise
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
