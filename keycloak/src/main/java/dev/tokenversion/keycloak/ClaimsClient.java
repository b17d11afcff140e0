package dev.tokenversion.keycloak;

import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Calls {@code POST /tokenversion/claims} and returns the version. One {@link HttpClient} per connect timeout
 * value, shared by every mapper of the JVM (HttpClient fixes its connect timeout at build time).
 *
 * <p>The whole exchange (connect, send, headers and body) is bounded by connect + read timeout: the request
 * timeout covers the wait for the headers, and the future is abandoned (and cancelled) after the total.
 */
public final class ClaimsClient {

    public static final String SECRET_HEADER = "X-TokenVersion-Secret";
    static final int MAX_BODY_BYTES = 16 * 1024;

    private static final ConcurrentMap<Long, HttpClient> CLIENTS = new ConcurrentHashMap<>();

    private ClaimsClient() {
    }

    static HttpClient clientFor(long connectTimeoutMs) {
        return CLIENTS.computeIfAbsent(connectTimeoutMs, ms -> HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofMillis(ms))
                .followRedirects(HttpClient.Redirect.NEVER)
                .build());
    }

    /** Why a call did not produce a version; the message never contains the secret. */
    public static final class ClaimsException extends Exception {
        public ClaimsException(String message) {
            super(message);
        }

        public ClaimsException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    public static long fetch(URI endpoint, String secret, ClaimsRequest body, long connectTimeoutMs, long readTimeoutMs)
            throws ClaimsException {
        HttpRequest.Builder rb = HttpRequest.newBuilder(endpoint)
                .timeout(Duration.ofMillis(readTimeoutMs))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toJson(), StandardCharsets.UTF_8));
        if (secret != null && !secret.isEmpty()) {
            rb.header(SECRET_HEADER, secret);
        }
        CompletableFuture<HttpResponse<byte[]>> future =
                clientFor(connectTimeoutMs).sendAsync(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
        HttpResponse<byte[]> response;
        try {
            response = future.get(connectTimeoutMs + readTimeoutMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            future.cancel(true);
            throw new ClaimsException("timed out after " + (connectTimeoutMs + readTimeoutMs) + " ms");
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw new ClaimsException("interrupted");
        } catch (ExecutionException e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            throw new ClaimsException(c.getClass().getSimpleName() + (c.getMessage() != null ? ": " + c.getMessage() : ""), c);
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
