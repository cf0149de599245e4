"""Signing key files: one PKCS#8 PEM per key in a private directory, checked the way ssh checks its keys.

The database keeps each key's kid, state and public key, so every replica can verify tokens; only
signing needs the private key, and that lives here, in ``<kid>.pem``, never in the database. A key
file is created with ``O_CREAT | O_EXCL`` (an existing file is never overwritten or followed through a
symlink) and set to 0600 whatever the umask; the directory is made 0700. At start
:meth:`KeyDirectory.prepare` refuses a directory or ``*.pem`` file that group or others can access,
naming the ``chmod`` to run, as ssh refuses a private key it considers too open, and one owned by
another user (who could swap the key for one they know). Replicas that sign tokens share one directory
(a mounted volume); key generation is serialised by the store's lock.

Every failure is a :class:`SigningKeyError` naming the path; no key material is ever put in a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from cube_stack.auth.errors import SigningKeyError
from cube_stack.auth.keys import (
    SigningKey,
    generate_signing_key,
    key_from_pem,
    load_private_key,
    private_pem,
    with_private,
)

KEY_SUFFIX = ".pem"
DIR_MODE = 0o700
FILE_MODE = 0o600
_OPEN_TO_OTHERS = 0o077  # any group or other permission bit
_MAX_KEY_BYTES = 64 * 1024  # an Ed25519 PKCS#8 PEM is about 120 bytes
_KID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # an RFC 7638 thumbprint is 43 base64url characters
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _mode(st_mode: int) -> str:
    return f"{stat.S_IMODE(st_mode):04o}"


def _check_owner(path: Path, st: os.stat_result) -> None:
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise SigningKeyError(
            f"the signing key path {path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}), "
            f"who could replace the key; run: chown {os.geteuid()} {path}",
            code="auth.key_owner",
            path=str(path),
        )


class KeyDirectory:
    """The directory of signing key files (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def key_path(self, kid: str) -> Path:
        """Return the file of key ``kid``; a kid that is not a thumbprint is refused (no path tricks)."""
        if not _KID.match(kid):
            raise SigningKeyError(
                f"signing key id {kid[:64]!r} is not a key thumbprint",
                code="auth.signing_key_invalid",
                path="",
            )
        return self.path / f"{kid}{KEY_SUFFIX}"

    def prepare(self) -> None:
        """Create the directory (0700) when missing, then refuse it or any key file if others can read it."""
        missing: list[Path] = []
        probe = self.path
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):  # new parents are private too: they lead to secrets
            with contextlib.suppress(FileExistsError):  # another replica or service made it first
                os.mkdir(directory, DIR_MODE)
                os.chmod(directory, DIR_MODE)  # exactly 0700 whatever the umask
        self.check()

    def check(self) -> None:
        """Refuse a key directory or ``*.pem`` file that group or others can access (ssh's rule)."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the signing key directory {self.path}: {exc.strerror}",
                code="auth.signing_key_invalid",
                path=str(self.path),
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise SigningKeyError(
                f"the signing key directory {self.path} is not a directory",
                code="auth.signing_key_invalid",
                path=str(self.path),
            )
        _check_owner(self.path, st)
        if st.st_mode & _OPEN_TO_OTHERS:
            raise SigningKeyError(
                f"the signing key directory {self.path} is accessible by group or others "
                f"(mode {_mode(st.st_mode)}); run: chmod 700 {self.path}",
                code="auth.key_dir_permissions",
                path=str(self.path),
            )
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if entry.name.endswith(KEY_SUFFIX):
                self._check_file(Path(entry.path), entry.stat())

    @staticmethod
    def _check_file(path: Path, st: os.stat_result) -> None:
        st_mode = st.st_mode
        if not stat.S_ISREG(st_mode):
            raise SigningKeyError(
                f"the signing key {path} is not a regular file",
                code="auth.signing_key_invalid",
                path=str(path),
            )
        _check_owner(path, st)
        if st_mode & _OPEN_TO_OTHERS:
            raise SigningKeyError(
                f"the signing key {path} is accessible by group or others (mode {_mode(st_mode)}); "
                f"run: chmod 600 {path}",
                code="auth.key_file_permissions",
                path=str(path),
            )

    def write(self, key: SigningKey) -> Path:
        """Write a new key's private half to ``<kid>.pem`` (0600, never over an existing file)."""
        path = self.key_path(key.kid)
        _write_new_private(path, private_pem(key))
        self._sync_directory()
        return path

    def remove(self, kid: str) -> None:
        """Delete a key file that was written for a key the database never recorded."""
        self.key_path(kid).unlink(missing_ok=True)

    def _sync_directory(self) -> None:
        # The new name must survive a crash before the database row that points to it is committed.
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY | _CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def load(self, key: SigningKey) -> SigningKey:
        """Return ``key`` (public, from the database) with its private half read from its file."""
        path = self.key_path(key.kid)
        where = str(path)
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:
            raise SigningKeyError(
                f"the {key.state} signing key {key.kid} has no file {path}. Restore it (replicas that sign "
                "tokens must share this directory); if it is lost, retire the key (UPDATE signing_keys SET "
                f"state = 'retired' WHERE kid = '{key.kid}') and start again: a new key is made and "
                "users log in again",
                code="auth.signing_key_missing",
                path=where,
            ) from None
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the signing key {path}: {exc.strerror}",
                code="auth.signing_key_invalid",
                path=where,
            ) from None
        try:
            st = os.fstat(fd)  # the file actually opened, not whatever the name points to later
            self._check_file(path, st)
            pem = os.read(fd, _MAX_KEY_BYTES)
        finally:
            os.close(fd)
        try:
            private_key = load_private_key(pem)
        except ValueError as exc:
            raise SigningKeyError(
                f"the signing key {path} is unusable: {exc}", code="auth.signing_key_invalid", path=where
            ) from None
        try:
            return with_private(key, private_key)
        except ValueError:
            raise SigningKeyError(
                f"the signing key {path} does not match the public key the database holds for {key.kid}; "
                "restore the right file",
                code="auth.signing_key_mismatch",
                path=where,
            ) from None


def load_key_file(path: Path, state: str) -> SigningKey:
    """Read an operator-held key file (``--signing-key`` and ``--previous-signing-key``).

    The file must be a regular file owned by this user and closed to group and others, as in a key
    directory. A private PKCS#8 PEM gives a key that can sign; a previous key may also be a public
    (SubjectPublicKeyInfo) PEM, so the old private key can be destroyed once it stops signing. The kid
    is the key's RFC 7638 thumbprint.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the signing key {path}: {exc.strerror}", code="auth.signing_key_missing", path=where
        ) from None
    try:
        st = os.fstat(fd)
        KeyDirectory._check_file(path, st)
        pem = os.read(fd, _MAX_KEY_BYTES)
    finally:
        os.close(fd)
    try:
        return key_from_pem(pem, state)
    except ValueError as exc:
        raise SigningKeyError(
            f"the signing key {path} is unusable: {exc}", code="auth.signing_key_invalid", path=where
        ) from None


def write_new_key_file(path: Path) -> SigningKey:
    """Make a new Ed25519 key and write it to ``path`` (0600, never over an existing file); return it."""
    key = generate_signing_key()
    _write_new_private(path, private_pem(key))
    return key


def _write_new_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` (0600; never over an existing file or through a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away; never added any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
