"""Serving config documents: the hot path, answered from this process's memory.

token → binding → document, all kept in dictionaries of this process:
* a binding (the token's deployment, its profile and the version it is to run) is loaded
  from PostgreSQL, in one query, the first time a token is seen;
* a document comes from Redis, where the writer put it when the version was committed, or is
  built from PostgreSQL; it is kept by profile (for its canaries, and for the rest, which may
  be a version behind while a loosening is in its canary wave) and replaced only by a newer
  version, so a process never serves a deployment an older version than one it has served;
* Redis also holds a generation marker that every change to what is served replaces (a new
  version, a revoked token, a moved deployment, a catalog sync). A process reads it at most
  every REDLINE_CONFIG_RECHECK_SECONDS and drops its bindings when it moved, and drops them
  anyway every REDLINE_CONFIG_REVALIDATE_SECONDS in case a change could not reach Redis.

PostgreSQL stays the authority. While Redis cannot be reached every request loads its binding
from PostgreSQL and documents are built in this process; the log says so when it starts and ends.
"""

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Subquery
from redis.exceptions import RedisError
from rest_framework.exceptions import AuthenticationFailed

from config.errors import NotFound
from tenants.authentication import MALFORMED_TOKEN, UNKNOWN_TOKEN
from tenants.models import DeploymentToken
from tenants.tokens import token_digest, token_looks_valid
from toggles.documents import Catalog, ConfigDocument, catalog_current, document_load
from toggles.models import Profile

logger = logging.getLogger(__name__)

GENERATION_KEY = "config:generation"
DOCUMENT_TTL = 7 * 24 * 3600
REDIS_ERRORS = (RedisError, OSError)


class ProfileMissing(NotFound):
    code = "profile_not_found"


def document_key(*, profile_id: int, version: int, catalog: str) -> str:
    return f"config:document:{profile_id}:{version}:{catalog}"


@dataclass(frozen=True, slots=True)
class Binding:
    token: str  # the token's SHA-256, never the token
    deployment_id: int
    deployment: str
    profile: str
    profile_id: int | None
    canary: bool
    version: int

    @property
    def stream(self) -> tuple[int | None, bool]:
        """What a document is kept under: canaries of a profile may run ahead of the rest."""
        return (self.profile_id, self.canary)


def binding_load(digest: str) -> Binding | None:
    """The deployment of an active token and the version it is to run, in one query: its
    profile's current version for a canary, the released version for any other."""
    profile = Profile.objects.filter(
        tenant_id=OuterRef("deployment__tenant_id"), name=OuterRef("deployment__profile_name")
    )
    row = (
        DeploymentToken.objects.filter(token_hash=digest, revoked_at__isnull=True)
        .annotate(
            profile_id=Subquery(profile.values("pk")[:1]),
            current=Subquery(profile.values("current_version")[:1]),
            released=Subquery(profile.values("released_version")[:1]),
        )
        .values(
            "deployment_id",
            "deployment__slug",
            "deployment__tenant__slug",
            "deployment__profile_name",
            "deployment__is_canary",
            "profile_id",
            "current",
            "released",
        )
        .first()
    )
    if row is None:
        return None
    canary = row["deployment__is_canary"]
    return Binding(
        token=digest,
        deployment_id=row["deployment_id"],
        deployment=f"{row['deployment__tenant__slug']}/{row['deployment__slug']}",
        profile=row["deployment__profile_name"],
        profile_id=row["profile_id"],
        canary=canary,
        version=(row["current"] if canary else row["released"]) or 0,
    )


class ConfigCache:
    """The caches of one process (the module's `config_cache`); threads share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything, as a new process would."""
        self._bindings: dict[str, Binding] = {}
        self._documents: OrderedDict[tuple[int | None, bool], ConfigDocument] = OrderedDict()
        self._catalog: Catalog | None = None
        self._epoch = 0
        self._epoch_started = float("-inf")
        self._generation: object = None
        self._checked_at = float("-inf")
        self._redis_up = True

    @property
    def redis_up(self) -> bool:
        return self._redis_up

    def binding(self, token: str) -> Binding:
        """The binding of a token; AuthenticationFailed when it is malformed, unknown or revoked."""
        now = time.monotonic()
        if now - self._checked_at >= settings.REDLINE_CONFIG_RECHECK_SECONDS:
            self._recheck(now)
        digest = token_digest(token)
        binding = self._bindings.get(digest)
        if binding is not None:
            return binding
        if not token_looks_valid(token):
            raise AuthenticationFailed(MALFORMED_TOKEN)
        epoch = self._epoch
        binding = binding_load(digest)
        if binding is None:
            raise AuthenticationFailed(UNKNOWN_TOKEN)
        if self._redis_up and epoch == self._epoch:
            self._bindings[digest] = binding
        return binding

    def document(self, binding: Binding) -> ConfigDocument:
        """The document to serve: the binding's version, or a newer one already served."""
        if binding.profile_id is None or binding.version < 1:
            raise ProfileMissing(
                f"deployment {binding.deployment} follows profile '{binding.profile}', "
                "which does not exist in its tenant"
            )
        catalog = self._catalog_current()
        kept = self._documents.get(binding.stream)
        if (
            kept is not None
            and kept.version >= binding.version
            and kept.catalog == catalog.fingerprint
        ):
            return kept
        version = max(binding.version, kept.version if kept else 0)
        document = self._fetch(binding.profile_id, version, catalog)
        return self._keep(binding.stream, document, catalog)

    def _recheck(self, now: float) -> None:
        self._checked_at = now
        try:
            generation = cache.get(GENERATION_KEY)
        except REDIS_ERRORS as error:
            if self._redis_up:
                logger.warning(
                    "Redis cannot be reached (%s): config is served from PostgreSQL until it is",
                    error,
                )
                self._redis_up = False
                self._bindings = {}
            if now - self._epoch_started >= settings.REDLINE_CONFIG_REVALIDATE_SECONDS:
                self._new_epoch(now, generation=None)
            return
        if not self._redis_up:
            logger.warning("Redis answers again: config is served from memory")
            self._redis_up = True
            self._new_epoch(now, generation=generation)
        elif (
            generation != self._generation
            or now - self._epoch_started >= settings.REDLINE_CONFIG_REVALIDATE_SECONDS
        ):
            self._new_epoch(now, generation=generation)

    def _new_epoch(self, now: float, *, generation: object) -> None:
        self._epoch += 1
        self._epoch_started = now
        self._generation = generation
        self._bindings = {}
        self._catalog = None

    def _catalog_current(self) -> Catalog:
        catalog = self._catalog
        if catalog is None:
            epoch = self._epoch
            catalog = catalog_current()
            if epoch == self._epoch:
                self._catalog = catalog
        return catalog

    def _fetch(self, profile_id: int, version: int, catalog: Catalog) -> ConfigDocument:
        key = document_key(profile_id=profile_id, version=version, catalog=catalog.fingerprint)
        if self._redis_up:
            try:
                document = cache.get(key)
            except REDIS_ERRORS:
                document = None
            if document is not None:
                return document
        document = document_load(catalog=catalog, profile_id=profile_id, version=version)
        if document is None:
            raise ProfileMissing(f"profile {profile_id} has no version {version}")
        if self._redis_up:
            try:
                cache.set(key, document, DOCUMENT_TTL)
            except REDIS_ERRORS:
                logger.warning("could not keep the config document %s in Redis", key)
        return document

    def _keep(
        self, stream: tuple[int | None, bool], document: ConfigDocument, catalog: Catalog
    ) -> ConfigDocument:
        with self._lock:
            kept = self._documents.get(stream)
            if (
                kept is None
                or document.version > kept.version
                or (document.version == kept.version and kept.catalog != catalog.fingerprint)
            ):
                kept = document
            self._documents[stream] = kept
            self._documents.move_to_end(stream)
            while len(self._documents) > settings.REDLINE_CONFIG_CACHE_SIZE:
                self._documents.popitem(last=False)
            return kept


config_cache = ConfigCache()


def config_changed() -> None:
    """Tell every process that what it serves may have changed; call after the change commits."""
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
    except REDIS_ERRORS as error:
        logger.warning(
            "Redis cannot be reached (%s): processes see the change within %ss",
            error,
            settings.REDLINE_CONFIG_REVALIDATE_SECONDS,
        )


def version_published(*, profile_id: int, version: int) -> None:
    """A version was committed: build and sign its document once, keep it in Redis, tell all."""
    try:
        catalog = catalog_current()
        document = document_load(catalog=catalog, profile_id=profile_id, version=version)
        if document is not None:
            key = document_key(profile_id=profile_id, version=version, catalog=catalog.fingerprint)
            try:
                cache.set(key, document, DOCUMENT_TTL)
            except REDIS_ERRORS as error:
                logger.warning("could not keep the config document %s in Redis (%s)", key, error)
    finally:
        config_changed()
