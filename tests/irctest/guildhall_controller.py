"""irctest server controller for guildhall's IRC gateway (docs/IRC.md).

irctest starts a fresh server for every test. Every nick on a guildhall node is an account and
channels live in guilds, so a bare node is not what irctest's cases expect; this controller
prepares one that is as close as the node allows:

* once per pytest process, a *template* data directory: a node is started on it, an owner
  registers with the `guildhall` CLI and creates the guild `irctest`, and the node is stopped.
  The guild's default role (`@everyone`) is then given `channels.manage`, so that any member
  may create a channel by joining an unknown `#name` (docs/IRC.md, "The default guild"). The
  CLI has no command to edit the default role, so this one permission is written into the
  stopped node's database: the same row an owner's `UpdateRole` would write.
* for each test, a copy of that template, served by `guildhall serve` with the IRC gateway on
  127.0.0.1 and the port irctest chose, the guild as `irc_default_guild`, `registration =
  "open"` and rate limits high enough for a test suite.

Accounts for the nicks a test uses are made by `guildhall_plugin.py` (the pytest plugin), with
`draft/account-registration` on a side connection; `registerUser` here does the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from typing import Any, Dict, Optional, Tuple

from irctest import patma
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.specifications import Capabilities

REPO = Path(__file__).resolve().parents[2]

# Bounds on every wait, in seconds.
START_TIMEOUT = 60.0
CLI_TIMEOUT = 60.0
REGISTER_TIMEOUT = 10.0

# What the node's default role holds here, on top of its defaults: creating channels.
DEFAULT_ROLE_PERMISSIONS = [
    "messages.read",
    "messages.send",
    "threads.create",
    "invites.create",
    "channels.manage",
]

# Rate limits high enough that a whole suite never meets them (they are per client address,
# and every test client is 127.0.0.1).
SETTINGS = """
[settings]
message_rate_limit = 1000000
register_rate_limit = 1000000
login_rate_limit = 1000000
"""


def guildhall_binary() -> Path:
    """The node binary: $IRCTEST_GUILDHALL_BIN, else the debug build of this checkout."""
    explicit = os.environ.get("IRCTEST_GUILDHALL_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return Path(target) / "debug" / "guildhall"


def node_env() -> Dict[str, str]:
    """The environment the node and the CLI run in: without any GUILDHALL_* variable of the
    caller's, which the node would read as settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDHALL_")}
    env.setdefault("RUST_LOG", "warn")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_tcp(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"guildhall exited with {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"guildhall did not listen on 127.0.0.1:{port} in {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def node_config(data_dir: Path, grpc_port: int, public_url: str, extra: str = "") -> str:
    return f"""
data_dir = "{data_dir}"
listen = "127.0.0.1:{grpc_port}"
p2p_listen = "/ip4/127.0.0.1/tcp/0"
public_url = "{public_url}"
registration = "open"
shutdown_grace_ms = 200
{extra}
{SETTINGS}
"""


class Template:
    """The prepared data directory every test's node starts from (made once per process)."""

    made: Optional["Template"] = None

    def __init__(self, root: Path, data_dir: Path, public_url: str, guild_id: str):
        self.root = root
        self.data_dir = data_dir
        self.public_url = public_url
        self.guild_id = guild_id

    @classmethod
    def get(cls) -> "Template":
        if cls.made is None:
            cls.made = cls.make()
        return cls.made

    @classmethod
    def make(cls) -> "Template":
        binary = guildhall_binary()
        if not binary.exists():
            raise RuntimeError(f"{binary} not found: build it first (cargo build)")
        root = Path(tempfile.mkdtemp(prefix="guildhall-irctest-template-"))
        data_dir = root / "data"
        grpc_port = free_port()
        # The same address for every copy: users keep the homeserver they registered on.
        public_url = f"http://127.0.0.1:{grpc_port}"
        config = root / "template.toml"
        config.write_text(node_config(data_dir, grpc_port, public_url))
        log = (root / "template.log").open("wb")
        proc = subprocess.Popen(
            [str(binary), "serve", "--config", str(config)],
            env=node_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_tcp(grpc_port, proc, START_TIMEOUT)
            identity = root / "owner.identity"
            target = ["--identity", str(identity), "--server", public_url]

            def cli(*args: str) -> str:
                done = subprocess.run(
                    [str(binary), *args],
                    env=node_env(),
                    capture_output=True,
                    text=True,
                    timeout=CLI_TIMEOUT,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"guildhall {' '.join(args)}: {done.stderr}")
                return done.stdout

            cli("keygen", "--identity", str(identity))
            cli("register", *target, "--name", "irctest owner")
            created = cli("guild", "create", *target, "--name", "irctest")
            found = re.search(r"^guild:\s+(\S+)", created, re.MULTILINE)
            if not found:
                raise RuntimeError(f"no guild id in {created!r}")
            guild_id = found.group(1)
        finally:
            stop(proc)
            log.close()
        db = data_dir / "guildhall.sqlite3"
        with sqlite3.connect(db) as conn:
            changed = conn.execute(
                "UPDATE roles SET permissions = ? WHERE id = ? AND guild_id = ?",
                (json.dumps(DEFAULT_ROLE_PERMISSIONS), guild_id, guild_id),
            ).rowcount
        if changed != 1:
            raise RuntimeError(f"no default role for guild {guild_id} in {db}")
        return cls(root, data_dir, public_url, guild_id)


class GuildhallController(BaseServerController, DirectoryBasedController):
    software_name = "guildhall"
    _port_wait_interval = 0.02
    supported_sasl_mechanisms = {"PLAIN"}
    supports_sts = False
    # The controller of the running test, for the plugin (one test at a time per process).
    active: Optional["GuildhallController"] = None

    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_NOTIFY,
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_REDACTION,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTILINE,
            Capabilities.MULTI_PREFIX,
            Capabilities.READ_MARKER,
            Capabilities.SERVER_TIME,
            Capabilities.SETNAME,
        )
    )

    isupport: Dict[str, Any] = {
        "CASEMAPPING": "ascii",
        "MONITOR": patma.ANYSTR,
        "MSGREFTYPES": "msgid,timestamp",
        "PREFIX": "(qaoh)~&@%",
        "UTF8ONLY": None,
        "WHOX": None,
    }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The server password irctest asked for (tests of PASS): the plugin makes it the
        # password of the account a client logs in to with it.
        self.server_password: Optional[str] = None
        # Accounts made on this node: name -> password.
        self.accounts: Dict[str, str] = {}

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str] = None,
        websocket_port: Optional[int] = None,
    ) -> None:
        if ssl:
            from irctest.runner import NotImplementedByController

            raise NotImplementedByController("TLS (needs the node's [tls] certificate)")
        if websocket_hostname is not None:
            from irctest.runner import NotImplementedByController

            raise NotImplementedByController("websocket")
        template = Template.get()
        # A test whose setUp raised after starting its server (irctest then skips tearDown)
        # leaves it running: stopped here, so at most one node per process outlives its test.
        previous = GuildhallController.active
        if previous is not None and previous is not self:
            previous.kill()
        GuildhallController.active = self
        self.create_config()
        assert self.directory
        data_dir = self.directory / "data"
        shutil.copytree(template.data_dir, data_dir)
        self.port = port
        self.hostname = "127.0.0.1"
        self.server_password = password
        extra = f"""
irc_listen = "127.0.0.1:{port}"
irc_default_guild = "{template.guild_id}"
"""
        config = self.directory / "guildhall.toml"
        config.write_text(
            node_config(data_dir, free_port(), template.public_url, extra)
        )
        self.proc = self.execute(
            [str(guildhall_binary()), "serve", "--config", str(config)],
            env=node_env(),
        )

    def kill(self) -> None:
        super().kill()
        if GuildhallController.active is self:
            GuildhallController.active = None

    def wait_for_services(self) -> None:
        # No services: accounts are the node's own.
        pass

    def registerUser(
        self,
        case: Any,
        username: str,
        password: Optional[str] = None,
    ) -> None:
        import guildhall_plugin

        self.wait_for_port()
        guildhall_plugin.ensure_account(self, username, password)


def get_irctest_controller_class() -> type:
    return GuildhallController
