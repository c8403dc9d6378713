"""pytest plugin: irctest's clients get guildhall accounts (load with `-p guildhall_plugin`).

On a guildhall node every nick is an account and a connection without SASL or PASS is refused
(`464`), while irctest's cases connect with a bare `NICK`/`USER`. This plugin wraps irctest's
`ClientMock.sendLine` and, for a client that is about to complete connection registration
without logging in:

1. makes the account named after the nick (`account_name`) on the node, unless made already, with
   `REGISTER <account> * <password>` (`draft/account-registration`) on a side connection;
2. sends `PASS <account>:<password>` just before the line that completes registration.

It leaves alone clients that log in themselves (`AUTHENTICATE`) or register (`REGISTER`), and,
when the test runs with a server password, clients that send none (they must be refused). A
client that sends the server password is logged in to its nick's account, made with that
password. The node wants passwords of at least 8 characters, so shorter test passwords
(`sesame`) are lengthened the same way wherever the plugin sees them: in `registerUser`, in
`PASS` and in single-piece `AUTHENTICATE PLAIN` messages.
"""

from __future__ import annotations

import base64
import re
import socket
import time
from typing import Any, List, Optional, Union

from irctest.client_mock import ClientMock

# The password of accounts made for nicks (tests never see it).
DEFAULT_PASSWORD = "irctest-password"
# The node's shortest password.
MIN_PASSWORD = 8
PAD = "+irctest"
# Bound on waiting for the node's answer to REGISTER, seconds.
REGISTER_TIMEOUT = 10.0


def account_name(nick: str) -> str:
    """The account made for a nick: usernames are lowercase `a-z`, `0-9`, `_` and `.`, so
    `Alys-83b2` becomes `alys_83b2` (the node then renames the client to it)."""
    return re.sub(r"[^a-z0-9_.]", "_", nick.lower())[:32]


def account_password(password: Optional[str]) -> str:
    """The password the node gets for a test's `password`."""
    if password is None:
        return DEFAULT_PASSWORD
    if len(password.encode()) < MIN_PASSWORD:
        return password + PAD
    return password


def active_controller() -> Any:
    import guildhall_controller

    return guildhall_controller.GuildhallController.active


def ensure_account(controller: Any, name: str, password: Optional[str] = None) -> bool:
    """Makes the account `name` (lowercased) on the node unless this test made it already.
    False if the node refuses the name (not a possible username)."""
    account = account_name(name)
    if account in controller.accounts:
        return True
    secret = account_password(password)
    with socket.create_connection(("127.0.0.1", controller.port), timeout=2) as side:
        side.sendall(f"REGISTER {account} * {secret}\r\n".encode())
        answer = read_until(side, ("REGISTER", "FAIL"))
        try:
            side.sendall(b"QUIT\r\n")
        except OSError:
            pass
    words = answer.split()
    verb_at = next(i for i, w in enumerate(words) if w in ("REGISTER", "FAIL"))
    verb, rest = words[verb_at], words[verb_at + 1 :]
    if verb == "REGISTER" and rest[:1] == ["SUCCESS"]:
        controller.accounts[account] = secret
        return True
    if rest[1:2] == ["ACCOUNT_EXISTS"]:
        controller.accounts[account] = secret
        return True
    if rest[1:2] == ["BAD_ACCOUNT_NAME"]:
        return False
    raise RuntimeError(f"guildhall refused to make the account {account!r}: {answer}")


def read_until(sock: socket.socket, verbs: tuple) -> str:
    deadline = time.monotonic() + REGISTER_TIMEOUT
    buffer = b""
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        buffer += data
        for raw in buffer.split(b"\r\n"):
            line = raw.decode(errors="replace")
            words = line.split()
            if words[:1] and words[0].startswith(":"):
                words = words[1:]
            if words[:1] and words[0] in verbs:
                return line
    raise RuntimeError(f"no answer to REGISTER: {buffer!r}")


def parse(line: str) -> List[str]:
    """The verb (uppercased) and parameters of a client line."""
    rest = line.strip("\r\n")
    if rest.startswith("@"):
        rest = rest.partition(" ")[2]
    if rest.startswith(":"):
        rest = rest.partition(" ")[2]
    head, sep, trailing = rest.partition(" :")
    words = head.split()
    if sep:
        words.append(trailing)
    if words:
        words[0] = words[0].upper()
    return words


class Login:
    """What the plugin knows of one client's connection registration."""

    def __init__(self) -> None:
        self.nick: Optional[str] = None
        self.user = False
        self.cap_negotiating = False
        self.logs_in_itself = False
        self.server_password_sent = False
        self.done = False


def rewrite_sasl(word: str) -> str:
    """A PLAIN message with a short password, lengthened as the account's was."""
    try:
        parts = base64.b64decode(word, validate=True).split(b"\0")
    except Exception:
        return word
    if len(parts) != 3:
        return word
    authzid, authcid, password = parts
    new = account_password(password.decode(errors="replace")).encode()
    account = account_name(authcid.decode(errors="replace")).encode()
    blob = b"\0".join([authzid, account, new])
    return base64.b64encode(blob).decode()


_original_send = ClientMock.sendLine


def send_line(self: ClientMock, line: Union[str, bytes]) -> None:
    controller = active_controller()
    state: Login = self.__dict__.setdefault("_guildhall_login", Login())
    if controller is None:
        return _original_send(self, line)
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    words = parse(text)
    if not words:
        return _original_send(self, line)
    verb, params = words[0], words[1:]

    if verb == "AUTHENTICATE" and params and len(params[0]) < 400:
        state.logs_in_itself = True
        if params[0] not in ("+", "*") and params[0].upper() not in ("PLAIN",):
            return _original_send(self, f"AUTHENTICATE {rewrite_sasl(params[0])}")
        return _original_send(self, line)
    if state.done:
        return _original_send(self, line)
    if verb == "PASS":
        if controller.server_password is not None and params[:1] == [
            controller.server_password
        ]:
            # Held back: sent as the account's login when registration completes.
            state.server_password_sent = True
            return None
        state.logs_in_itself = True
        state.done = True
        return _original_send(self, line)
    if verb == "REGISTER":
        state.logs_in_itself = True
    elif verb == "CAP" and params[:1] and params[0].upper() in ("LS", "REQ"):
        state.cap_negotiating = True
    elif verb == "CAP" and params[:1] and params[0].upper() == "END":
        state.cap_negotiating = False
    elif verb == "NICK" and params:
        state.nick = params[0]
    elif verb == "USER":
        state.user = True
    completes = state.nick and state.user and not state.cap_negotiating
    if completes:
        state.done = True
        wants_login = not state.logs_in_itself and (
            controller.server_password is None or state.server_password_sent
        )
        if wants_login:
            password = (
                controller.server_password if state.server_password_sent else None
            )
            if ensure_account(controller, state.nick, password):
                account = account_name(state.nick)
                secret = account_password(password)
                _original_send(self, f"PASS {account}:{secret}")
    return _original_send(self, line)


# Test files about what the gateway deliberately does not do, skipped with the reason
# (tests/irctest/README.md lists them).
EXCLUDED = {
    "oper.py": "no IRC operators: server admins act over gRPC (guildhall admin)",
    "kill.py": "no IRC operators (KILL)",
    "wallops.py": "no IRC operators (WALLOPS)",
    "info.py": "no IRC operators (the test needs OPER)",
    "links.py": "no server links on IRC: nodes federate over gRPC and libp2p",
    "whowas.py": "no WHOWAS: nicks are accounts, they are never given up",
    "chmodes/": "channel modes are the node's roles and permissions (MODE is read-only)",
    "invite.py": "no INVITE: guild invites are tokens made over gRPC",
    "websocket.py": "no WebSocket IRC listener",
    "bouncer.py": "Ergo's bouncer (multiclient) features",
    "znc_playback.py": "ZNC playback is not offered",
    "relaymsg.py": "draft/relaymsg is not offered",
    "roleplay.py": "Ergo's roleplay commands",
    "confusables.py": "Ergo's confusable-nick rules",
    "channel_rename.py": "draft/channel-rename is not offered (rename with UpdateChannel)",
    "channel_forward.py": "channel forwarding is a channel mode",
    "metadata.py": "draft/metadata is not offered",
    "metadata_3.py": "draft/metadata is not offered",
}


def pytest_configure(config: Any) -> None:
    ClientMock.sendLine = send_line  # type: ignore[method-assign]


def pytest_collection_modifyitems(session: Any, config: Any, items: List[Any]) -> None:
    import pytest

    for item in items:
        path = item.nodeid.split("::")[0]
        for name, why in EXCLUDED.items():
            if path.startswith("irctest/server_tests/" + name):
                item.add_marker(pytest.mark.skip(reason=f"guildhall: {why}"))


def pytest_unconfigure(config: Any) -> None:
    controller = active_controller()
    if controller is not None:
        controller.kill()
