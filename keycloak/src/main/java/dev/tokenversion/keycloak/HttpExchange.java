package dev.tokenversion.keycloak;

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
 * The one way the extension talks to the provider: a JSON POST with the shared-secret header and a hard bound
 * on the whole exchange. Used by the mapper (claims) and the event listener (events), so the timeout logic is
 * written once.
 *
 * <p>{@link HttpClient} fixes its connect timeout when it is built, so there is one client per connect timeout
 * value, shared by the JVM. The request timeout covers the wait for the response headers; the whole exchange
 * (connect, send, headers and body) is abandoned, and its future cancelled, after connect + request timeout.
 * Redirects are never followed: they would carry the secret elsewhere.
 */
public final class HttpExchange {

    public static final String SECRET_HEADER = "X-TokenVersion-Secret";

    private static final ConcurrentMap<Long, HttpClient> CLIENTS = new ConcurrentHashMap<>();

    private HttpExchange() {
    }

    static HttpClient clientFor(long connectTimeoutMs) {
        return CLIENTS.computeIfAbsent(connectTimeoutMs, ms -> HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofMillis(ms))
                .followRedirects(HttpClient.Redirect.NEVER)
                .build());
    }

    /**
     * POSTs {@code json} to {@code url} and returns the response, within connect + request timeout.
     *
     * @throws TimeoutException when the bound is reached (the exchange is cancelled)
     * @throws IOException when the exchange fails (the original cause, unwrapped)
     */
    public static <T> HttpResponse<T> postJson(URI url, String secret, String json, long connectTimeoutMs,
                                               long requestTimeoutMs, HttpResponse.BodyHandler<T> handler)
            throws IOException, InterruptedException, TimeoutException {
        HttpRequest.Builder rb = HttpRequest.newBuilder(url)
                .timeout(Duration.ofMillis(requestTimeoutMs))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json, StandardCharsets.UTF_8));
        if (secret != null && !secret.isEmpty()) {
            rb.header(SECRET_HEADER, secret);
        }
        return await(clientFor(connectTimeoutMs).sendAsync(rb.build(), handler), connectTimeoutMs + requestTimeoutMs);
    }

    /**
     * GETs {@code url} with the secret header, within connect + request timeout (the feed follower of the cached
     * mapper mode: {@link FeedFollower}).
     */
    public static <T> HttpResponse<T> get(URI url, String secret, long connectTimeoutMs, long requestTimeoutMs,
                                          HttpResponse.BodyHandler<T> handler)
            throws IOException, InterruptedException, TimeoutException {
        HttpRequest.Builder rb = HttpRequest.newBuilder(url)
                .timeout(Duration.ofMillis(requestTimeoutMs))
                .header("Accept", "application/json")
                .GET();
        if (secret != null && !secret.isEmpty()) {
            rb.header(SECRET_HEADER, secret);
        }
        return await(clientFor(connectTimeoutMs).sendAsync(rb.build(), handler), connectTimeoutMs + requestTimeoutMs);
    }

    private static <T> HttpResponse<T> await(CompletableFuture<HttpResponse<T>> future, long boundMs)
            throws IOException, InterruptedException, TimeoutException {
        try {
            return future.get(boundMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException | InterruptedException e) {
            future.cancel(true);
            throw e;
        } catch (ExecutionException e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            if (c instanceof IOException io) {
                throw io;
            }
            throw new IOException(c.getClass().getSimpleName() + (c.getMessage() != null ? ": " + c.getMessage() : ""), c);
        }
    }

    /** What went wrong, for a log line: the exception's class and message (never a secret: none is in them). */
    static String describe(Throwable e) {
        return e.getClass().getSimpleName() + (e.getMessage() != null ? ": " + e.getMessage() : "");
    }
}
