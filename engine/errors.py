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



class RunFileError(UserError):
    """A run file that cannot be read (missing, not HDF5, damaged, not a run):
    the message is ``<path>: <what is wrong>``, one line."""
