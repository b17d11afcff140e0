package dev.tokenversion.keycloak;

import java.net.URI;
import java.util.function.Function;

/** Parses the event listener's SPI options (pure, for tests). */
public final class ListenerConfig {

    public static final String OPT_URL = "url";
    public static final String OPT_SECRET = "secret";
    public static final String OPT_CONNECT_TIMEOUT_MS = "connectTimeoutMs";
    public static final String OPT_REQUEST_TIMEOUT_MS = "requestTimeoutMs";
    public static final String OPT_QUEUE_SIZE = "queueSize";

    public static final long DEFAULT_CONNECT_TIMEOUT_MS = 300;
    public static final long DEFAULT_REQUEST_TIMEOUT_MS = 1000;
    public static final int DEFAULT_QUEUE_SIZE = 10_000;
    static final long RETRY_DELAY_MS = 200;

    private ListenerConfig() {
    }

    /**
     * @param option returns an option's raw value or null (backed by Config.Scope#get in Keycloak)
     * @return the settings, or null when no URL is configured (the listener then does nothing)
     */
    public static EventSender.Settings parse(Function<String, String> option) {
        String rawUrl = MapperConfig.trimToNull(option.apply(OPT_URL));
        if (rawUrl == null) {
            return null;
        }
        URI url;
        try {
            url = MapperConfig.parseUrl(rawUrl);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("spi-events-listener--tokenversion--url: must be an absolute http(s) URL");
        }
        String secret = MapperConfig.trimToNull(option.apply(OPT_SECRET));
        long connect = positive(option, OPT_CONNECT_TIMEOUT_MS, "connect-timeout-ms", DEFAULT_CONNECT_TIMEOUT_MS);
        long request = positive(option, OPT_REQUEST_TIMEOUT_MS, "request-timeout-ms", DEFAULT_REQUEST_TIMEOUT_MS);
        long queue = positive(option, OPT_QUEUE_SIZE, "queue-size", DEFAULT_QUEUE_SIZE);
        return new EventSender.Settings(url, secret, connect, request, RETRY_DELAY_MS, (int) Math.min(queue, 1_000_000));
    }

    private static long positive(Function<String, String> option, String key, String dashed, long dflt) {
        String raw = MapperConfig.trimToNull(option.apply(key));
        if (raw == null) {
            return dflt;
        }
        try {
            long v = Long.parseLong(raw);
            if (v >= 1 && v <= 1_000_000) {
                return v;
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new IllegalArgumentException("spi-events-listener--tokenversion--" + dashed
                + ": must be an integer between 1 and 1000000");
    }
}
