"""`edge-agent install` and `uninstall`: the plan's steps run in order, then the agent (re)started
and waited for, with a rollback when an upgrade's new version does not come online.

    code = install(request, out=sys.stdout)      # InstallError subclasses carry the exit status
    code = uninstall(layout, systemd=True, purge=False, out=sys.stdout)

Steps (plan.py decides which are already so): the service user; /etc/edge-agent (0750
root:edge-agent) and each bundle file in it (keys 0600 edge-agent, the rest 0640 root:edge-agent);
/var/lib/edge-agent (0700 edge-agent); the venv of the wheel's version; the unit (systemd: written,
daemon-reload, enabled); then the activation:
- first install: `current` -> version, start, wait until online (else NotOnline, exit 4: installed);
- same version: restart only if a file, the venv or the unit changed, or the agent is not running;
- upgrade (another version): stop the old agent, `current` -> new, start, wait; if it is not
  online within --health-timeout: stop it, `current` -> old, the old configuration files back, start
  the old one (RolledBack, exit 3). The state directory is never touched by the installer.
After a successful upgrade the versions other than the new and the previous one are removed.
Runs on one thread; a failing step raises StepFailed naming it, with what to do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ...common.errors import EdgeError
from ..config import load_config
from .bundle import BundleFile
from .errors import InstallError, NotOnline, RolledBack, StepFailed
from .health import wait_online
from .layout import UNIT, Layout
from .plan import CONFIG_MODE, Prepared, Request, Step, prepare
from .service import DirectService, Service, SystemdService
from .system import Owner, Users, dir_is, file_is, place_dir, place_file, remove_tree
from .units import agent_unit, systemd_version
from .venv import VersionVenv, switch

ETC_MODE, STATE_MODE = 0o750, 0o700
DEFAULT_STOP_TIMEOUT_S = 40.0


@dataclass
class Backup:
    """A configuration file as it was before this run (None: it did not exist)."""

    path: Path
    data: bytes | None
    mode: int = 0
    owner: Owner = field(default_factory=lambda: Owner(0, 0))


class Installation:
    """One run of `edge-agent install` over a prepared plan."""

    def __init__(self, prepared: Prepared, out: TextIO) -> None:
        self.p = prepared
        self.layout = prepared.request.layout
        self.users = Users(self.layout, as_root=prepared.as_root)
        self.chown = prepared.as_root
        self.out = out
        self.changed = False  # something the agent reads changed: restart it
        self.backups: list[Backup] = []
        self.service: Service = self._service()

    def _service(self) -> Service:
        if self.p.request.systemd:
            return SystemdService(self.layout)
        return DirectService(self.layout, self.users, self.p.config.stop_timeout_s)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # -- the steps ---------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        steps = [self._user_step(), self._dir_step(self.layout.etc, ETC_MODE, self.users.root_group)]
        steps += [self._file_step(f) for f in self.p.files]
        steps.append(self._dir_step(self.layout.state, STATE_MODE, self.users.owner))
        steps.append(self._venv_step())
        if self.p.request.systemd:
            steps.append(self._unit_step())
        return steps

    def _user_step(self) -> Step:
        title = f"system user {self.layout.user}"
        if self.users.exists():
            return Step(title, None)
        return Step(title, self.users.create, "useradd must be there (Debian: the passwd package)")

    def _owner_known(self) -> bool:
        return self.users.exists()

    def _dir_step(self, path: Path, mode: int, owner: Callable[[], Owner]) -> Step:
        title = f"{path}/ ({mode:o})"
        if self._owner_known() and dir_is(path, mode, owner(), chown=self.chown):
            return Step(title, None)
        return Step(
            title, lambda: place_dir(path, mode, owner(), chown=self.chown), "is the file system writable?"
        )

    def _file_step(self, f: BundleFile) -> Step:
        path = self.layout.etc / f.name
        owner = self.users.root_group if f.mode == CONFIG_MODE else self.users.owner
        title = f"{path} ({f.mode:o})"
        if self._owner_known() and file_is(path, f.data, f.mode, owner(), chown=self.chown):
            return Step(title, None)

        def write() -> None:
            self._keep(path)
            place_file(path, f.data, f.mode, owner(), chown=self.chown)
            self.changed = True

        return Step(title, write, "is /etc writable (not a read-only root)?")

    def _keep(self, path: Path) -> None:
        try:
            st = path.stat()
            self.backups.append(
                Backup(path, path.read_bytes(), st.st_mode & 0o7777, Owner(st.st_uid, st.st_gid))
            )
        except FileNotFoundError:
            self.backups.append(Backup(path, None))

    def _venv(self) -> VersionVenv:
        system_site = self.p.request.system_site
        return VersionVenv(
            self.layout.venv(self.p.version), python=self.p.request.python, system_site=system_site
        )

    def _venv_step(self) -> Step:
        venv, wheel = self._venv(), self.p.wheel
        title = f"{venv.path}/ (a venv of {wheel.path.name if wheel else self.p.version})"
        if wheel is None or venv.holds(wheel):
            return Step(title, None)

        def make() -> None:
            venv.make(wheel)
            self.changed = True

        return Step(title, make, "see pip's output above; the venv was removed, so run the install again")

    def _unit_step(self) -> Step:
        service = self.service
        assert isinstance(service, SystemdService)
        config = self.p.config
        text = agent_unit(
            self.layout, config.workers.grace_s, config.stop_timeout_s, systemd_version() or 252
        )
        wanted = self.layout.unit_dir / "multi-user.target.wants" / UNIT
        title = f"{self.layout.unit} (enabled)"
        if self.layout.unit.is_file() and self.layout.unit.read_text() == text and wanted.is_symlink():
            return Step(title, None)

        def write() -> None:
            self.layout.unit_dir.mkdir(parents=True, exist_ok=True)
            place_file(self.layout.unit, text.encode(), 0o644, Owner(0, 0), chown=False)
            service.reload_units()
            service.enable()
            self.changed = True

        return Step(title, write, "is systemctl there and /etc/systemd/system writable?")

    def run_steps(self, steps: list[Step]) -> None:
        for step in steps:
            if step.action is None:
                self.say(f"  = {step.title}: already so")
                continue
            self.say(f"  + {step.title}")
            try:
                step.action()
            except InstallError as exc:
                raise StepFailed(f"{step.title}: {exc.message}") from None
            except OSError as exc:
                raise StepFailed(f"{step.title}: {exc}. {step.remedy}") from None

    # -- the activation ------------------------------------------------------------------------------

    def activate(self) -> str:
        """Start, restart or upgrade as the plan needs; the line for the summary."""
        p, service = self.p, self.service
        if p.upgrade:
            return self._upgrade(p.installed or "")
        if p.installed is None:
            switch(self.layout.current, p.version)
        elif not self.changed and service.running():
            return f"version {p.version} runs already: nothing restarted"
        service.stop()
        service.start()
        problem = self._wait(p.version)
        if problem is not None:
            raise NotOnline(
                f"version {p.version} is installed but not online after {p.request.health_timeout_s:g} s: "
                f"{problem}. Check the broker address and the agent's log (below)"
            )
        return f"version {p.version} started and online"

    def _wait(self, version: str) -> str | None:
        url, timeout = self.p.health_url(), self.p.request.health_timeout_s
        if timeout <= 0 or (isinstance(self.service, SystemdService) and self.service.offline):
            return None
        if url is None:
            return "no /health to wait on ([metrics] off or port 0): set metrics.port, or --health-timeout 0"
        return wait_online(url, version, timeout, self.service.failure, self.service.pending)

    def _upgrade(self, old: str) -> str:
        new, service = self.p.version, self.service
        self.say(f"  + upgrade {old} -> {new}: stop {old}, switch, start {new}, wait")
        service.stop()
        switch(self.layout.current, new)
        service.start()
        problem = self._wait(new)
        if problem is None:
            self._prune(keep={new, old})
            return f"upgraded {old} -> {new}: online"
        self.say(f"  ! {new} is not online ({problem.splitlines()[0]}): rolling back to {old}")
        service.stop()
        switch(self.layout.current, old)
        self._restore()
        service.start()
        again = self._wait(old)
        state = "online again" if again is None else f"NOT online either: {again}"
        raise RolledBack(
            f"version {new} did not come online within {self.p.request.health_timeout_s:g} s: {problem}\n"
            f"rolled back to {old} (its configuration files restored, the state untouched), {state}"
        )

    def _restore(self) -> None:
        for backup in reversed(self.backups):
            if backup.data is None:
                backup.path.unlink(missing_ok=True)
            else:
                place_file(backup.path, backup.data, backup.mode, backup.owner, chown=self.chown)

    def _prune(self, keep: set[str]) -> None:
        for entry in self.layout.opt.iterdir():
            if (
                entry.name not in keep
                and entry != self.layout.current
                and entry.is_dir()
                and not entry.is_symlink()
            ):
                remove_tree(entry)

    # -- the summary -------------------------------------------------------------------------------------

    def summary(self, outcome: str) -> None:
        url = self.p.health_url()
        self.say(f"done: {outcome}")
        self.say("check it:")
        for line in self.service.check_lines():
            self.say(f"  {line}")
        if url is not None:
            self.say(f"  curl -s {url}")
            self.say(f"  curl -s {url.removesuffix('/health')}/metrics")
        self.say(f"  edge-agent state {self.layout.state} --limit 5")
        self.say(
            f"where: configuration and keys {self.layout.etc}, state {self.layout.state}, "
            f"program {self.layout.current} -> {self.p.version}"
        )
        if not self.p.as_root:
            self.say("not root: the files are yours, no user was made and nothing was chowned")


def install(request: Request, out: TextIO) -> int:
    prepared = prepare(request)
    run = Installation(prepared, out)
    mode = "systemd" if request.systemd else "without systemd"
    where = request.layout.root
    run.say(f"edge-agent install: node {prepared.node}, version {prepared.version} ({mode}) under {where}")
    steps = run.steps()
    if request.dry_run:
        for step in steps:
            run.say(f"  + {step.title}" if step.action is not None else f"  = {step.title}: already so")
        run.say(f"  + then: {_activation_plan(prepared)}")
        run.say("dry run: nothing was changed")
        return 0
    run.run_steps(steps)
    run.summary(run.activate())
    return 0


def _activation_plan(p: Prepared) -> str:
    if p.upgrade:
        wait = p.request.health_timeout_s
        return f"stop {p.installed}, start {p.version}, wait up to {wait:g} s, else back to {p.installed}"
    if p.installed is None:
        return f"start {p.version} and wait up to {p.request.health_timeout_s:g} s for it to be online"
    return f"restart {p.version} if anything changed or it is not running"


def uninstall(layout: Layout, *, systemd: bool, purge: bool, out: TextIO) -> int:
    """Stop and remove the program and the unit; --purge also the keys, the state and the user."""
    as_root = os.geteuid() == 0
    users = Users(layout, as_root=as_root)
    stop_timeout = DEFAULT_STOP_TIMEOUT_S
    with contextlib.suppress(EdgeError, OSError):  # no configuration left: the default drain
        stop_timeout = load_config(layout.config, environ={}).stop_timeout_s
    print(f"edge-agent uninstall under {layout.root}{' (--purge)' if purge else ''}", file=out)
    if systemd:
        service = SystemdService(layout)
        if layout.unit.exists():
            service.disable()
            print(f"  - {UNIT}: stopped and disabled", file=out)
        remove_tree(layout.unit)
        service.reload_units()
    else:
        DirectService(layout, users, stop_timeout).stop()
        print("  - the agent: stopped", file=out)
    remove_tree(layout.opt)
    print(f"  - {layout.opt}/", file=out)
    if purge:
        for path in (layout.etc, layout.state):
            remove_tree(path)
            print(f"  - {path}/ (keys and configuration, state)", file=out)
        users.remove()
        print(f"  - user {layout.user}", file=out)
    else:
        print(f"kept: {layout.etc}/ (keys) and {layout.state}/ (state); --purge removes them", file=out)
    return 0
