"""hosts tells well-known public module hosts and mirrors from hosts that look private.

:func:`looks_private` is a heuristic, so it errs towards "public": a module
host looks private when it is not a well-known public host and it is an IP
address, has a TLD no public registry sells (``.internal``, ``.corp``,
``.local``, ``.example``...), or carries a label companies use for internal
code hosts (``corp``, ``internal``, ``intranet``, or a first label like
``git``/``gitlab``/``gerrit``). :func:`is_public_host` is the converse list
used to flag GOINSECURE/GONOSUMDB patterns that cover public code, and
:data:`PUBLIC_MIRRORS` names the public GOPROXY services.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

PUBLIC_HOSTS: frozenset[str] = frozenset(
    {
        "github.com",
        "gitlab.com",
        "bitbucket.org",
        "golang.org",
        "go.googlesource.com",
        "gopkg.in",
        "go.uber.org",
        "google.golang.org",
        "cloud.google.com",
        "k8s.io",
        "sigs.k8s.io",
        "go.etcd.io",
        "go.opentelemetry.io",
        "go.opencensus.io",
        "go.mongodb.org",
        "honnef.co",
        "mvdan.cc",
        "rsc.io",
        "gotest.tools",
        "gorm.io",
        "gocloud.dev",
        "filippo.io",
        "modernc.org",
        "gonum.org",
        "gitee.com",
        "git.sr.ht",
        "codeberg.org",
        "code.gitea.io",
        "launchpad.net",
        "dario.cat",
        "gvisor.dev",
        "tailscale.com",
        "storj.io",
        "cuelang.org",
        "helm.sh",
        "istio.io",
        "knative.dev",
        "go.starlark.net",
        "golang.zx2c4.com",
        "nhooyr.io",
        "lukechampine.com",
        "howett.net",
        "inet.af",
        "go4.org",
        "gioui.org",
        "fyne.io",
        "entgo.io",
        "connectrpc.com",
        "buf.build",
    }
)
"""Hosts of public Go code that a private-module check must never flag."""

PUBLIC_MIRRORS: frozenset[str] = frozenset(
    {
        "proxy.golang.org",
        "goproxy.cn",
        "goproxy.io",
        "mirrors.aliyun.com",
        "mirrors.cloud.tencent.com",
        "repo.huaweicloud.com",
        "goproxy.baidu.com",
        "athens.azurefd.net",
    }
)
"""Public GOPROXY services: they cannot fetch private code and must never be sent its paths."""

NON_PUBLIC_TLDS: frozenset[str] = frozenset(
    {
        "internal",
        "corp",
        "local",
        "lan",
        "home",
        "intranet",
        "private",
        "localdomain",
        "localhost",
        "example",
        "invalid",
        "test",
        "intra",
        "priv",
        "office",
    }
)
_PRIVATE_LABELS = frozenset({"corp", "internal", "intranet", "intra", "private", "lan"})
_SCM_FIRST_LABELS = frozenset(
    {"git", "gitlab", "gitea", "gogs", "gerrit", "scm", "stash", "bitbucket", "svn", "forgejo"}
)


def module_host(path: str) -> str:
    """The first element of a module path, lower-cased."""
    return path.split("/", 1)[0].lower()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_public_host(host: str) -> bool:
    """True when ``host`` is, or is under, a well-known public code host."""
    host = host.lower()
    return any(host == h or host.endswith("." + h) for h in PUBLIC_HOSTS)


def looks_private(path: str) -> bool:
    """True when the module path's host looks like a company's own (see the module docstring)."""
    host = module_host(path).split(":")[0]
    if not host or is_public_host(host):
        return False
    if _is_ip(host):
        return True
    labels = host.split(".")
    if len(labels) < 2 or labels[-1] in NON_PUBLIC_TLDS:
        return True
    if any(label in _PRIVATE_LABELS for label in labels[:-1]):
        return True
    return labels[0] in _SCM_FIRST_LABELS and len(labels) >= 3


def is_public_mirror(url: str) -> bool:
    """True when a GOPROXY URL points at a well-known public mirror."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in PUBLIC_MIRRORS)


def is_private_network_host(host: str) -> bool:
    """True for private/link-local IP literals and hosts with a non-public TLD or private label."""
    host = host.lower().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        return (
            len(labels) < 2
            or labels[-1] in NON_PUBLIC_TLDS
            or any(label in _PRIVATE_LABELS for label in labels[:-1])
        )
    return ip.is_private or ip.is_link_local


PUBLIC_GOPROXY = (
    "https://goproxy.cn|https://mirrors.aliyun.com/goproxy/|https://proxy.golang.org,direct"
)
"""The public mirrors, fastest-first from China, each falling through to the next on any error."""
