package dev.tokenversion.keycloak;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.Map;
import java.util.function.UnaryOperator;

/** Parses and validates the protocol mapper's own config keys (pure, for tests). */
public final class MapperConfig {

    public static final long DEFAULT_CONNECT_TIMEOUT_MS = 300;
    public static final long DEFAULT_READ_TIMEOUT_MS = 500;
    static final long MAX_TIMEOUT_MS = 60_000;

    private MapperConfig() {
    }

    /**
     * @param secretResolver turns the stored secret (maybe a {@code ${vault.key}} reference) into the secret
     * @throws IllegalArgumentException with a message naming the bad key
     */
    public static VersionResolver.Settings parse(Map<String, String> config, UnaryOperator<String> secretResolver) {
        String rawUrl = trimToNull(config.get(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL));
        URI endpoint = rawUrl == null ? null : parseUrl(rawUrl);
        String secret = trimToNull(config.get(TokenVersionProtocolMapper.CONFIG_SECRET));
        if (secret != null && secretResolver != null) {
            secret = secretResolver.apply(secret);
        }
        long connect = parseTimeout(config, TokenVersionProtocolMapper.CONFIG_CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS);
        long read = parseTimeout(config, TokenVersionProtocolMapper.CONFIG_READ_TIMEOUT_MS, DEFAULT_READ_TIMEOUT_MS);
        FailurePolicy policy;
        try {
            policy = FailurePolicy.parse(config.get(TokenVersionProtocolMapper.CONFIG_FAILURE_POLICY));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(TokenVersionProtocolMapper.CONFIG_FAILURE_POLICY + ": " + e.getMessage());
        }
        return new VersionResolver.Settings(endpoint, secret, connect, read, policy);
    }

    static URI parseUrl(String raw) {
        try {
            URI uri = new URI(raw);
            String scheme = uri.getScheme();
            if (scheme == null || !(scheme.equalsIgnoreCase("http") || scheme.equalsIgnoreCase("https"))
                    || uri.getHost() == null) {
                throw new IllegalArgumentException(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL
                        + ": must be an absolute http(s) URL");
            }
            return uri;
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException(TokenVersionProtocolMapper.CONFIG_ENDPOINT_URL + ": not a valid URL");
        }
    }

    static long parseTimeout(Map<String, String> config, String key, long dflt) {
        String raw = trimToNull(config.get(key));
        if (raw == null) {
            return dflt;
        }
        long v;
        try {
            v = Long.parseLong(raw);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + ": not an integer number of milliseconds");
        }
        if (v < 1 || v > MAX_TIMEOUT_MS) {
            throw new IllegalArgumentException(key + ": must be between 1 and " + MAX_TIMEOUT_MS + " ms");
        }
        return v;
    }

    static String trimToNull(String s) {
        if (s == null) {
            return null;
        }
        String t = s.trim();
        return t.isEmpty() ? null : t;
    }
}
