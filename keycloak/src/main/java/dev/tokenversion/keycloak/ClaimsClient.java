package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpResponse;
import java.util.concurrent.TimeoutException;

/**
 * Calls {@code POST /tokenversion/claims} and returns the version. The exchange, its client and its bound
 * (connect + read timeout for the whole of it) are {@link HttpExchange}'s; this class builds the request and
 * refuses any answer but the contract's.
 */
public final class ClaimsClient {

    /** The header the provider reads the mapper secret from ({@link HttpExchange#SECRET_HEADER}). */
    public static final String SECRET_HEADER = HttpExchange.SECRET_HEADER;
    static final int MAX_BODY_BYTES = 16 * 1024;

    private ClaimsClient() {
    }

    /** Why a call did not produce a version; the message never contains the secret. */
    public static final class ClaimsException extends Exception {
        private final boolean unavailable;

        public ClaimsException(String message) {
            this(message, null, false);
        }

        public ClaimsException(String message, Throwable cause) {
            this(message, cause, false);
        }

        ClaimsException(String message, Throwable cause, boolean unavailable) {
            super(message, cause);
            this.unavailable = unavailable;
        }

        /** The provider could not be reached, timed out or answered 5xx (what opens the cached mode's breaker),
         * as opposed to an answer that is wrong (4xx, garbage). */
        public boolean unavailable() {
            return unavailable;
        }
    }

    public static long fetch(URI endpoint, String secret, ClaimsRequest body, long connectTimeoutMs, long readTimeoutMs)
            throws ClaimsException {
        HttpResponse<byte[]> response;
        try {
            response = HttpExchange.postJson(endpoint, secret, body.toJson(), connectTimeoutMs, readTimeoutMs,
                    HttpResponse.BodyHandlers.ofByteArray());
        } catch (TimeoutException e) {
            throw new ClaimsException("timed out after " + (connectTimeoutMs + readTimeoutMs) + " ms", null, true);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ClaimsException("interrupted");
        } catch (IOException e) {
            throw new ClaimsException(HttpExchange.describe(e), e, true);
        }
        if (response.statusCode() >= 500) {
            throw new ClaimsException("HTTP " + response.statusCode() + errorCode(response.body()), null, true);
        }
        return parse(response.statusCode(), response.body(), body.sub());
    }

    /** Validates a claims answer; anything but {@code 200 {"token_version": <int >= 0>}} is refused. */
    static long parse(int status, byte[] raw, String expectedSub) throws ClaimsException {
        if (status != 200) {
            throw new ClaimsException("HTTP " + status + errorCode(raw));
        }
        if (raw == null || raw.length == 0) {
            throw new ClaimsException("empty body");
        }
        if (raw.length > MAX_BODY_BYTES) {
            throw new ClaimsException("body larger than " + MAX_BODY_BYTES + " bytes");
        }
        JsonNode node;
        try {
            node = Json.MAPPER.readTree(raw);
        } catch (IOException e) {
            throw new ClaimsException("body is not JSON");
        }
        if (node == null || !node.isObject()) {
            throw new ClaimsException("body is not a JSON object");
        }
        JsonNode sub = node.get("sub");
        if (sub != null && !sub.isNull() && expectedSub != null && !expectedSub.equals(sub.asText())) {
            throw new ClaimsException("answer is for another subject");
        }
        JsonNode v = node.get("token_version");
        if (v == null || !v.isIntegralNumber() || !v.canConvertToLong()) {
            throw new ClaimsException("token_version missing or not an integer");
        }
        long version = v.longValue();
        if (version < 0) {
            throw new ClaimsException("token_version is negative");
        }
        return version;
    }

    private static String errorCode(byte[] raw) {
        if (raw == null || raw.length == 0 || raw.length > MAX_BODY_BYTES) {
            return "";
        }
        try {
            JsonNode n = Json.MAPPER.readTree(raw);
            JsonNode e = n == null ? null : n.get("error");
            if (e != null && e.isTextual()) {
                String s = e.asText();
                return " (" + (s.length() > 64 ? s.substring(0, 64) : s) + ")";
            }
        } catch (IOException ignored) {
            // not JSON: no code to report
        }
        return "";
    }
}
