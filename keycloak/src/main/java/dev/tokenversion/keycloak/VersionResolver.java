package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;

import java.net.URI;
import java.util.OptionalLong;

/**
 * The mapper's decision logic without Keycloak types: ask the provider, remember the answer, fall back to the
 * remembered version, and apply the failure policy.
 */
public final class VersionResolver {

    private static final Logger LOG = Logger.getLogger(VersionResolver.class);

    /** Thrown under {@link FailurePolicy#FAIL} when no version can be had. */
    public static final class VersionUnavailableException extends RuntimeException {
        public VersionUnavailableException(String message) {
            super(message);
        }
    }

    /** Where a version came from: the provider (a claims call), the remembered answer of a failed call, none;
     * in cached mode the fresh map, or the map past its staleness bound (the provider could not be asked). */
    public enum Source { PROVIDER, REMEMBERED, NONE, MAP, STALE_MAP }

    public record Result(OptionalLong version, Source source) {
    }

    /** Per-mapper settings, parsed from the mapper's config. */
    public record Settings(URI endpoint, String secret, long connectTimeoutMs, long readTimeoutMs,
                           FailurePolicy policy, MapperMode mode, String feedSecret, long maxStalenessMs) {

        /** Direct mode. */
        public Settings(URI endpoint, String secret, long connectTimeoutMs, long readTimeoutMs, FailurePolicy policy) {
            this(endpoint, secret, connectTimeoutMs, readTimeoutMs, policy, MapperMode.DIRECT, null,
                    MapperConfig.DEFAULT_MAX_STALENESS_MS);
        }
    }

    private final VersionCache cache;

    public VersionResolver(VersionCache cache) {
        this.cache = cache;
    }

    public VersionCache cache() {
        return cache;
    }

    public Result resolve(String realmId, ClaimsRequest request, Settings settings) {
        String endpoint = settings.endpoint() == null ? "" : settings.endpoint().toString();
        String key = VersionCache.key(realmId, request.sub(), endpoint);
        String shown = forLog(settings.endpoint());
        String reason;
        if (settings.endpoint() == null) {
            reason = "no endpoint configured (" + MapperConfig.ENDPOINT_URL + ")";
        } else {
            try {
                long v = ClaimsClient.fetch(settings.endpoint(), settings.secret(), request,
                        settings.connectTimeoutMs(), settings.readTimeoutMs());
                cache.remember(key, v);
                return new Result(OptionalLong.of(v), Source.PROVIDER);
            } catch (ClaimsClient.ClaimsException e) {
                reason = e.getMessage();
            }
        }
        OptionalLong remembered = cache.lookup(key);
        if (remembered.isPresent()) {
            LOG.warnf("tokenversion: claims call to %s failed (%s); using remembered version %d for user %s",
                    shown, reason, remembered.getAsLong(), request.sub());
            return new Result(remembered, Source.REMEMBERED);
        }
        if (settings.policy() == FailurePolicy.FAIL) {
            LOG.warnf("tokenversion: claims call to %s failed (%s); no remembered version for user %s; "
                    + "failure policy 'fail': refusing to issue the token", shown, reason, request.sub());
            throw new VersionUnavailableException("token version unavailable");
        }
        LOG.warnf("tokenversion: claims call to %s failed (%s); no remembered version for user %s; "
                + "failure policy 'omit_claim': token issued without the claim", shown, reason, request.sub());
        return new Result(OptionalLong.empty(), Source.NONE);
    }

    /** The endpoint without user-info, query or fragment, so nothing secret reaches the log. */
    static String forLog(URI uri) {
        if (uri == null) {
            return "(none)";
        }
        return uri.getScheme() + "://" + uri.getHost() + (uri.getPort() >= 0 ? ":" + uri.getPort() : "")
                + (uri.getRawPath() == null ? "" : uri.getRawPath());
    }
}
