"""Sandboxes that run generated code against tests: a registry of backends and their shared types.

from sandbox import SandboxJob, make_sandbox

sandbox = make_sandbox("local", timeout_s=10, memory_mb=512, allow_unisolated=False)
result = sandbox.run(SandboxJob(code=code, tests=["assert add(1, 2) == 3"]))
"""

from __future__ import annotations

from importlib import import_module

from sandbox.base import (
    ExecutionResult,
    Sandbox,
    SandboxError,
    SandboxJob,
    TestFailure,
    TestOutcome,
)

# Backend name -> "module:Class", imported only when chosen (their SDKs are optional extras).
PROVIDERS: dict[str, str] = {
    "local": "sandbox.local:LocalSandbox",
    "e2b": "sandbox.e2b:E2BSandbox",
    "docker": "sandbox.docker:DockerSandbox",
}


def make_sandbox(
    name: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    allow_unisolated: bool = False,
    docker_image: str | None = None,
) -> Sandbox:
    """Create the named backend; raise SandboxError (one line) if it cannot run here.

    `docker_image` is the docker backend's image (None: the one built from the host's Python);
    the other backends have no image to choose.
    """
    try:
        module_name, class_name = PROVIDERS[name].split(":")
    except KeyError:
        raise SandboxError(
            f"unknown sandbox {name!r}: choose one of {', '.join(PROVIDERS)}"
        ) from None
    backend: type[Sandbox] = getattr(import_module(module_name), class_name)
    options = {"image": docker_image} if name == "docker" else {}
    return backend(
        timeout_s=timeout_s, memory_mb=memory_mb, allow_unisolated=allow_unisolated, **options
    )


__all__ = [
    "PROVIDERS",
    "ExecutionResult",
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "TestFailure",
    "TestOutcome",
    "make_sandbox",
]
