"""Errors a user caused, reported as one line and a non-zero exit."""


class UserError(Exception):
    """Bad input (scenario, command line, environment): one line, exit status 2."""

    exit_status = 2


class ScenarioError(UserError):
    """A scenario file that cannot be used; the message names file, key and line."""


class BackendUnavailable(UserError):
    """The requested compute backend cannot run on this machine."""


class DoesNotFit(UserError):
    """The lattice needs more memory than the device (or host) has."""



class RunLocked(UserError):
    """Another live process is writing (or repairing) the run file."""


class OutputFailed(UserError):
    """Writing the run file (or its sidecars) failed: a full disk, a quota, an I/O error.

    ``hdf5_unclosed`` is set when HDF5 could not close the file after the failure;
    its exit handler would then crash the process, so ``oncolattice`` ends without it."""

    exit_status = 1

    def __init__(self, message: str, hdf5_unclosed: bool = False):
        super().__init__(message)
        self.hdf5_unclosed = hdf5_unclosed


class Interrupted(Exception):
    """A stop signal (SIGINT, SIGTERM, SIGUSR1) ended the command at a step boundary;
    exit status 128 + the signal number (130, 143, 138)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + int(signum)


def printable(text: str) -> str:
    """`text` with every non-printable character (control characters, terminal escapes,
    line separators, undecodable bytes) written as a Python escape, so a message stays
    one inert line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def shown(path) -> str:
    """A path as it is printed in a one-line message (`printable`)."""
    import os
    return printable(os.fsdecode(path))


class RunFileError(UserError):
    """A run file that cannot be read (missing, not HDF5, damaged, not a run):
    the message is ``<path>: <what is wrong>``, one line."""
