#!/usr/bin/env python3
"""guildhall interop client, written from docs/PROTOCOL.md and proto/ only.

1. Rebuilds every signing-envelope test vector of PROTOCOL.md section 7 from the
   document's rules and checks bytes and signatures against the hex in the document.
2. With --server, registers a fresh identity on a running node, calls GetMyData,
   logs in again and checks that replaying the Login is refused (UNAUTHENTICATED).
3. With --host as well (a second node that can reach the first), runs the federation
   walk of sections 11, 13 and 14: the user of --server joins a guild on --host
   (join-invite, vouched for by Federate), talks there, changes their profile at home
   (update-user, forwarded to the host), sees the host's membership event in GetMyData,
   is invited to a DM from the host (dm-invite), revokes a second device
   (device-revocation) and finally moves her homeserver to the host (homeserver-move-v2
   in a Login, sent on to the old homeserver).

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


def sb_update_user_v2(k_id, k_dev, name, avatar_url, presence_preference, bio, guild_order,
                      is_profile_synced, irc_name, pronouns, banner_url, accent_color,
                      timestamp: int) -> bytes:
    return envelope("update-user-v2", f_key(k_id), f_key(k_dev), f_opt(name, f_str),
                    f_opt(avatar_url, f_str), f_opt(presence_preference, f_u64),
                    f_opt(bio, f_str), f_opt(guild_order, f_str),
                    f_opt(is_profile_synced, f_bool), f_opt(irc_name, f_str),
                    f_opt(pronouns, f_str), f_opt(banner_url, f_str),
                    f_opt(accent_color, f_str), f_u64(timestamp))


def sb_account_status(k_id, status: str, timestamp: int) -> bytes:
    return envelope("account-status", f_key(k_id), f_str(status), f_u64(timestamp))


def sb_relationship(audience, k_id, k_dev, other, action: str, homeserver_url: str,
                    timestamp: int) -> bytes:
    return envelope("relationship", f_key(audience), f_key(k_id), f_key(k_dev), f_key(other),
                    f_str(action), f_str(homeserver_url), f_u64(timestamp))


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


def sb_server_ban(origin, user, banned: bool, reason: str, timestamp: int) -> bytes:
    """Section 15.1: an entry of the origin server's own moderation list."""
    return envelope("server-ban", f_key(origin), f_key(user), f_bool(banned), f_str(reason),
                    f_u64(timestamp))
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
    built["update-user-v2"] = ("K_dev", sb_update_user_v2(
        KI, KD, None, None, None, None, None, None, None, "she/her", "", "#ff8800", T))
    built["verify-user"] = ("K_id", sb_verify_user(AUD, KI, T))
    built["account-status"] = ("K_id", sb_account_status(KI, "deleted", T))
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
    built["relationship"] = ("K_dev", sb_relationship(
        SECOND, KI, KD, SECOND, "request", "https://a.example", T))
    built["server-event"] = ("server", sb_server_event(AUD, "test-note", 7, T, b"hello"))
    built["server-ban"] = ("server", sb_server_ban(AUD, KI, True, "spam", T))

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


def same_address(a: str, b: str) -> bool:
    """Canonical addresses compare with a trailing '/' ignored (section 11.1)."""
    return a.rstrip("/") == b.rstrip("/")


def wait_until(what: str, probe, timeout_s: float = 60.0, step_s: float = 0.2):
    """Calls probe() until it returns something truthy, at most timeout_s seconds.

    For effects that travel between nodes in the background (the outbox, section 10)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Mismatch(f"{what}: not seen within {timeout_s:.0f} s")
        time.sleep(step_s)


def bearer(token: str):
    return [("authorization", f"Bearer {token}")]


class Identity:
    """A user's K_id and one device K_dev with its DeviceCert (sections 1, 3 device-cert)."""

    def __init__(self, pb2, device_id: str):
        self.k_id = Ed25519PrivateKey.generate()
        self.k_dev = Ed25519PrivateKey.generate()
        self.kid_hex, self.kdev_hex = pub_hex(self.k_id), pub_hex(self.k_dev)
        self.device_id = device_id
        issued = now_ms()
        expiry = issued + 30 * 24 * 3600 * 1000
        self.cert = pb2.DeviceCert(
            pubkey=self.kdev_hex, device_id=device_id, issued_at=issued, expiry=expiry,
            signature=self.k_id.sign(sb_device_cert(self.kid_hex, self.kdev_hex, device_id,
                                                    issued, expiry)).hex())


def server_info(pb2, stub, name: str):
    info = stub.GetServerInfo(pb2.Empty(), timeout=10)
    check(HEX64.match(info.server_pubkey) is not None,
          f"{name}: server_pubkey not 64 lowercase hex: {info.server_pubkey!r}")
    check(info.canonical_address.startswith(("http://", "https://")),
          f"{name}: canonical_address is not an http(s) URL: {info.canonical_address!r}")
    return info


def register(pb2, stub, audience: str, who: Identity, display_name: str, device_name: str):
    """Section 6 steps 3: Register, signed for `audience`."""
    ts = now_ms()
    r = stub.Register(pb2.RegisterRequest(
        display_name=display_name, public_key=who.kid_hex, device_cert=who.cert,
        id_proof=who.k_id.sign(sb_id_proof(audience, who.kid_hex, ts)).hex(),
        device_name=device_name,
        signature=who.k_dev.sign(sb_register(audience, who.kid_hex, who.kdev_hex, display_name,
                                             device_name, ts)),
        timestamp=ts), timeout=10)
    check(HEX64.match(r.token) is not None, f"Register token not 64 hex: {r.token!r}")
    check(HEX64.match(r.refresh_token) is not None, "Register refresh_token not 64 hex")
    check(r.user.id == who.kid_hex, f"Register user.id {r.user.id} != K_id {who.kid_hex}")
    return r


def open_channel(address: str, flag: str):
    import grpc

    m = re.match(r"^(https?)://([^/]+)/?$", address)
    check(m is not None, f"{flag} must look like http://host:port, got {address!r}")
    scheme, target = m.groups()
    if scheme == "https":
        return grpc.secure_channel(target, grpc.ssl_channel_credentials())
    return grpc.insecure_channel(target)


def run_client(server: str, proto_root: Path, host: str | None = None) -> None:
    import grpc

    print(f"== live client against {server}")

    with tempfile.TemporaryDirectory(prefix="guildhall-py-stubs-") as tmp:
        pb2, pb2_grpc = load_stubs(proto_root, tmp)
        channel = open_channel(server, "--server")
        stub = pb2_grpc.GuildHallStub(channel)

        # 1. Keys and a device certificate.
        ada = Identity(pb2, "py-" + secrets.token_hex(4))
        k_id, k_dev, cert = ada.k_id, ada.k_dev, ada.cert
        kid_hex, kdev_hex = ada.kid_hex, ada.kdev_hex
        print(f"  [keys]      K_id={kid_hex}\n              K_dev={kdev_hex} "
              f"device_id={ada.device_id}")

        # 2. Audience.
        info = server_info(pb2, stub, "server")
        audience = info.server_pubkey
        print(f"  [info]      server_pubkey={audience} version={info.version!r} peer_id={info.peer_id}")

        # 3. Register.
        r = register(pb2, stub, audience, ada, "Py Client", "Python")
        ts = now_ms()
        print(f"  [register]  OK user.id={r.user.id} name={r.user.name!r} "
              f"token={r.token[:8]}... refresh={r.refresh_token[:8]}...")

        # 4. GetMyData with the bearer token.
        md = stub.GetMyData(pb2.Empty(), metadata=bearer(r.token), timeout=10)
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
        md2 = stub.GetMyData(pb2.Empty(), metadata=bearer(lr.token), timeout=10)
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
        if host:
            run_federation(pb2, pb2_grpc, stub, info, ada, lr.token, host)
        channel.close()


def run_federation(pb2, pb2_grpc, home, home_info, ada: Identity, ada_home_token: str,
                   host_address: str) -> None:
    """Sections 11, 13 and 14 across two nodes: `home` is Ada's homeserver, `host_address`
    another node that hosts a guild. Every signature is made here, from the document."""
    import grpc

    print(f"== federation: homeserver {home_info.canonical_address}, host {host_address}")
    host_channel = open_channel(host_address, "--host")
    host = pb2_grpc.GuildHallStub(host_channel)
    host_info = server_info(pb2, host, "host")
    check(host_info.server_pubkey != home_info.server_pubkey,
          "--server and --host are the same node (same server_pubkey)")
    print(f"  [host]      server_pubkey={host_info.server_pubkey} "
          f"address={host_info.canonical_address}")

    # Bo, a user of the host, makes a guild there and an invite to it.
    bo = Identity(pb2, "py-host-" + secrets.token_hex(4))
    bo_token = register(pb2, host, host_info.server_pubkey, bo, "Py Host Owner", "Python").token
    guild = host.CreateGuild(pb2.CreateGuildRequest(name="Python interop"),
                             metadata=bearer(bo_token), timeout=10).guild
    channels = host.ListChannels(pb2.ListChannelsRequest(guild_id=guild.id),
                                 metadata=bearer(bo_token), timeout=10).channels
    check(len(channels) >= 1, f"CreateGuild made no channel in guild {guild.id}")
    channel_id = channels[0].id
    invite = host.GenerateInvite(pb2.GenerateInviteRequest(channel_id=channel_id, max_uses=1),
                                 metadata=bearer(bo_token), timeout=10).token
    check(len(invite) > 0, "GenerateInvite returned an empty token")
    print(f"  [guild]     id={guild.id} channel={channel_id} invite={invite}")

    # 11.1: Ada joins on the host naming her homeserver; the host asks it to vouch (Federate).
    ts = now_ms()
    home_url = home_info.canonical_address
    join = pb2.JoinInviteRequest(
        token=invite, public_key=ada.kid_hex, device_cert=ada.cert, timestamp=ts,
        display_name="Py Client", avatar_url="", homeserver_url=home_url,
        signature=ada.k_dev.sign(sb_join_invite(host_info.server_pubkey, ada.kid_hex,
                                                ada.kdev_hex, invite, "Py Client", "",
                                                home_url, ts)))
    joined = host.JoinInvite(join, timeout=30)
    check(joined.guild.id == guild.id, f"JoinInvite joined {joined.guild.id}, not {guild.id}")
    check(HEX64.match(joined.token) is not None, "JoinInvite token not 64 hex")
    ada_host_token = joined.token
    print(f"  [join]      OK on the host, vouched for by the homeserver; "
          f"token={ada_host_token[:8]}...")

    # The homeserver added the host to Ada's server list before vouching (11.1 step 3).
    md = home.GetMyData(pb2.Empty(), metadata=bearer(ada_home_token), timeout=10)
    listed = [s.server_url for s in md.servers]
    check(any(same_address(u, host_info.canonical_address) for u in listed),
          f"GetMyData.servers on the homeserver {listed} lacks the host "
          f"{host_info.canonical_address}")
    print(f"  [servers]   homeserver lists the host: {listed}")
    ada_on_host = host.GetUsers(pb2.GetUsersRequest(user_ids=[ada.kid_hex]),
                                metadata=bearer(bo_token), timeout=10).users
    check(len(ada_on_host) == 1 and same_address(ada_on_host[0].homeserver, home_url),
          f"the host shows Ada's homeserver as "
          f"{[u.homeserver for u in ada_on_host]}, not {home_url}")

    # A remote member talks like a local one (11).
    text = "hello from Python, " + secrets.token_hex(4)
    sent = host.SendMessage(pb2.SendMessageRequest(channel_id=channel_id, text=text),
                            metadata=bearer(ada_host_token), timeout=10).message
    history = host.GetHistory(pb2.GetHistoryRequest(channel_id=channel_id, limit=10),
                              metadata=bearer(bo_token), timeout=10).messages
    check(any(m.id == sent.id and m.sender_id == ada.kid_hex and m.text == text
              for m in history),
          f"Bo's history on the host lacks Ada's message {sent.id}")
    print(f"  [message]   OK Bo sees Ada's message {sent.id}")

    # 13: the host announces the membership to her homeserver, which lists the guild.
    def guild_listed():
        servers = home.GetMyData(pb2.Empty(), metadata=bearer(ada_home_token),
                                 timeout=10).servers
        return any(same_address(s.server_url, host_info.canonical_address)
                   and guild.id in s.guild_ids for s in servers)
    wait_until(f"guild {guild.id} in GetMyData.servers[host].guild_ids", guild_listed)
    print(f"  [membership] OK the homeserver lists guild {guild.id} on the host")

    # 11.3: a signed profile change at home reaches the host, which checks Ada's signature.
    # Signed as update-user-v2 (signature_version 2), so it can carry pronouns too.
    ts = now_ms()
    new_name, new_bio, pronouns = "Py Renamed", "changed from Python", "she/her"
    upd = pb2.UpdateUserRequest(
        name=new_name, bio=new_bio, pronouns=pronouns, accent_color="#ff8800",
        signature_version=2, device_cert=ada.cert, timestamp=ts,
        signature=ada.k_dev.sign(sb_update_user_v2(ada.kid_hex, ada.kdev_hex, new_name, None,
                                                   None, new_bio, None, None, None, pronouns,
                                                   None, "#ff8800", ts)))
    me = home.UpdateUser(upd, metadata=bearer(ada_home_token), timeout=10)
    check(me.name == new_name and me.bio == new_bio and me.pronouns == pronouns
          and me.accent_color == 0xff8800,
          f"UpdateUser answered name={me.name!r} bio={me.bio!r} pronouns={me.pronouns!r} "
          f"accent_color={me.accent_color!r}")

    def renamed_on_host():
        users = host.GetUsers(pb2.GetUsersRequest(user_ids=[ada.kid_hex]),
                              metadata=bearer(bo_token), timeout=10).users
        return (users and users[0].name == new_name and users[0].bio == new_bio
                and users[0].pronouns == pronouns)
    wait_until("Ada's new name on the host (UpdateFederatedProfile)", renamed_on_host)
    print(f"  [profile]   OK the host shows {new_name!r}")
    try:
        home.UpdateUser(upd, metadata=bearer(ada_home_token), timeout=10)
    except grpc.RpcError as e:
        refused = f"{e.code().name} {e.details()!r}"
        # Section 4: a seen signature is refused, and a profile change must also be newer.
        check((e.code(), e.details().split(":")[0]) in [
                  (grpc.StatusCode.UNAUTHENTICATED, "signature"),
                  (grpc.StatusCode.FAILED_PRECONDITION, "timestamp")],
              f"replayed UpdateUser: expected UNAUTHENTICATED 'signature: …' or "
              f"FAILED_PRECONDITION 'timestamp: …', got {e.code().name} {e.details()!r}")
    else:
        raise Mismatch("replayed UpdateUser was accepted")
    print(f"  [profile]   replay refused: {refused}")

    # 14.1: Bo invites Ada to a DM hosted on the host, signed for Ada's homeserver.
    dm = host.CreateDM(pb2.CreateDMRequest(target_user_id=ada.kid_hex),
                       metadata=bearer(bo_token), timeout=10)
    check(dm.guild.is_dm and dm.token, f"CreateDM answered {dm}")
    ts = now_ms()
    host_url = host_info.canonical_address
    dm_invite = pb2.DMInvite(
        token=dm.token, inviter_id=bo.kid_hex, guild_id=dm.guild.id, host_server_url=host_url,
        timestamp=ts, inviter_pubkey=bo.kid_hex, device_cert=bo.cert,
        target_user_id=ada.kid_hex,
        signature=bo.k_dev.sign(sb_dm_invite(home_info.server_pubkey, bo.kid_hex, bo.kdev_hex,
                                             ada.kid_hex, dm.token, dm.guild.id, host_url, ts)))
    host.SendDMInvite(pb2.SendDMInviteRequest(target_user_id=ada.kid_hex, invite=dm_invite,
                                              target_homeserver_url=home_url),
                      metadata=bearer(bo_token), timeout=30)
    # 14.1: the host answers once the invite is in its outbox; delivery follows, so look a few
    # times (bounded: 100 tries, 10 s at most).
    got = []
    for _ in range(100):
        invites = home.ListDMInvites(pb2.ListDMInvitesRequest(),
                                     metadata=bearer(ada_home_token), timeout=10).invites
        got = [i for i in invites if i.token == dm.token]
        if got:
            break
        time.sleep(0.1)
    check(len(got) == 1, f"ListDMInvites on the homeserver: no invite with token {dm.token}")
    got = got[0]
    check(got.status == "pending" and got.guild_id == dm.guild.id
          and same_address(got.host_server_url, host_url),
          f"DM invite on the homeserver: status={got.status!r} guild_id={got.guild_id!r} "
          f"host_server_url={got.host_server_url!r}")
    # Ada's client checks the invite itself (14.1 step 5), from the fields it was given.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(got.device_cert.pubkey)).verify(
        got.signature, sb_dm_invite(home_info.server_pubkey, got.inviter_pubkey,
                                    got.device_cert.pubkey, got.target_user_id, got.token,
                                    got.guild_id, got.host_server_url, got.timestamp))
    print(f"  [dm-invite] OK delivered to the homeserver, signature checks: {got.invite_id}")

    # 12.2: Ada certifies a second device, uses it at home, then revokes it with K_id.
    laptop = Ed25519PrivateKey.generate()
    laptop_hex = pub_hex(laptop)
    issued = now_ms()
    laptop_cert = pb2.DeviceCert(
        pubkey=laptop_hex, device_id="py-laptop", issued_at=issued,
        expiry=issued + 24 * 3600 * 1000,
        signature=ada.k_id.sign(sb_device_cert(ada.kid_hex, laptop_hex, "py-laptop", issued,
                                               issued + 24 * 3600 * 1000)).hex())

    def laptop_login():
        lts = now_ms()
        return home.Login(pb2.LoginRequest(
            device_cert=laptop_cert, timestamp=lts, user_id=ada.kid_hex,
            signature=laptop.sign(sb_login(home_info.server_pubkey, ada.kid_hex, laptop_hex,
                                           None, None, None, None, [], lts))), timeout=10)
    laptop_token = laptop_login().token
    home.GetMyData(pb2.Empty(), metadata=bearer(laptop_token), timeout=10)
    rts = now_ms()
    home.RevokeDevice(pb2.DeviceRevocation(
        user_id=ada.kid_hex, device_pubkey=laptop_hex, timestamp=rts,
        signature=ada.k_id.sign(sb_device_revocation(ada.kid_hex, laptop_hex, rts)).hex()),
        metadata=bearer(ada_home_token), timeout=10)
    try:
        laptop_login()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION
              and e.details().startswith("device_cert.pubkey"),
              f"login with a revoked device: expected FAILED_PRECONDITION "
              f"'device_cert.pubkey: …', got {e.code().name} {e.details()!r}")
    else:
        raise Mismatch("a revoked device logged in again")
    print("  [revoke]    OK the revoked device can't log in at home")

    # 12.1: Ada moves her homeserver to the host: a homeserver-move-v2 statement (sequence 1)
    # carried by a Login at the host, which tells her old homeserver through its outbox.
    mts = now_ms()
    move_bytes = sb_homeserver_move_v2(ada.kid_hex, host_url, mts, 1, b"")
    move_sig = ada.k_id.sign(move_bytes).hex()
    targets = [home_url]
    lts = max(now_ms(), mts + 1)
    moved = host.Login(pb2.LoginRequest(
        device_cert=ada.cert, timestamp=lts, user_id=ada.kid_hex, new_homeserver=host_url,
        migration_timestamp=mts, migration_signature=move_sig, migration_targets=targets,
        migration_sequence=1, migration_prev=b"",
        signature=ada.k_dev.sign(sb_login(host_info.server_pubkey, ada.kid_hex, ada.kdev_hex,
                                          None, host_url, mts, move_sig, targets, lts))),
        timeout=10)
    check(same_address(moved.user.homeserver, host_url),
          f"Login with a move: the host shows homeserver {moved.user.homeserver!r}")

    def moved_at_old_home():
        users = home.GetUsers(pb2.GetUsersRequest(user_ids=[ada.kid_hex]),
                              metadata=bearer(ada_home_token), timeout=10).users
        return users and same_address(users[0].homeserver, host_url)
    wait_until("the move on the old homeserver (UpdateHomeServer)", moved_at_old_home)
    print(f"  [move]      OK both nodes show Ada's homeserver as {host_url}")

    # 12.5: Ada disables her account at her homeserver (now the host) with a K_id-signed
    # statement and no session; logging in is refused until she enables it again.
    def account_status(status_name, status_number, ts):
        return host.SetAccountStatus(pb2.AccountStatusStatement(
            user_id=ada.kid_hex, status=status_number, timestamp=ts,
            signature=ada.k_id.sign(sb_account_status(ada.kid_hex, status_name, ts)).hex()),
            timeout=10)

    def login_at_host():
        ts = now_ms()
        return host.Login(pb2.LoginRequest(
            device_cert=ada.cert, timestamp=ts, user_id=ada.kid_hex,
            signature=ada.k_dev.sign(sb_login(host_info.server_pubkey, ada.kid_hex, ada.kdev_hex,
                                              None, None, None, None, [], ts))), timeout=10)
    account_status("disabled", 2, now_ms())
    try:
        login_at_host()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and "disabled" in e.details(),
              f"Login of a disabled account: got {e.code().name} {e.details()!r}")
    else:
        raise Mismatch("Login of a disabled account was accepted")
    account_status("enabled", 1, now_ms() + 1)
    check(login_at_host().user.id == ada.kid_hex, "Login after enabling the account")
    print("  [account]   OK disabled (login refused) and enabled again with K_id statements")
    host_channel.close()
    print("  federation checks passed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", help="node gRPC address, e.g. http://127.0.0.1:50051")
    ap.add_argument("--host", help="a second node that hosts a guild, reachable from --server "
                    "and able to reach it (runs the federation checks)")
    ap.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="path to PROTOCOL.md")
    ap.add_argument("--proto", type=Path, default=DEFAULT_PROTO, help="proto include root")
    args = ap.parse_args()
    try:
        check_vectors(args.doc)
        if args.host and not args.server:
            raise Mismatch("--host needs --server (the user's homeserver)")
        if args.server:
            run_client(args.server, args.proto, args.host)
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
