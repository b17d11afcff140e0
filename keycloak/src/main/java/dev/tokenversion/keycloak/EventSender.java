package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpResponse;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Delivers events to {@code POST /tokenversion/events} off the request thread: a small bounded pool, explicit
 * timeouts, one retry on a network error or 5xx, none on 4xx. Delivery is best effort (in memory): events queued
 * when Keycloak stops, or dropped when the queue is full, are lost and logged.
 */
public final class EventSender implements AutoCloseable {

    public enum Outcome { DELIVERED, REFUSED, FAILED }

    /** Settings of the sender, from the SPI options. */
    public record Settings(URI url, String secret, long connectTimeoutMs, long requestTimeoutMs, long retryDelayMs,
                           int queueSize) {
    }

    private static final Logger LOG = Logger.getLogger(EventSender.class);

    private final Settings settings;
    private final ThreadPoolExecutor executor;

    public EventSender(Settings settings) {
        this.settings = settings;
        AtomicInteger n = new AtomicInteger();
        this.executor = new ThreadPoolExecutor(1, 2, 60, TimeUnit.SECONDS,
                new ArrayBlockingQueue<>(Math.max(1, settings.queueSize())), r -> {
                    Thread t = new Thread(r, "tokenversion-events-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
    }

    public Settings settings() {
        return settings;
    }

    /** Queues the event; never blocks. Returns the future outcome, or null if the queue was full. */
    public Future<Outcome> submit(OutboundEvent event) {
        try {
            return executor.submit(() -> deliver(event));
        } catch (RejectedExecutionException e) {
            LOG.warnf("tokenversion: event queue full or closed; dropped %s %s (id %s)", event.type(),
                    event.keycloakEvent(), event.id());
            return null;
        }
    }

    /** Sends now, on the calling thread, with at most one retry. */
    public Outcome deliver(OutboundEvent event) {
        String body = event.toJson();
        for (int attempt = 1; attempt <= 2; attempt++) {
            String problem;
            try {
                int status = post(body);
                if (status >= 200 && status < 300) {
                    LOG.debugf("tokenversion: delivered %s (id %s)", event.type(), event.id());
                    return Outcome.DELIVERED;
                }
                if (status < 500) {
                    LOG.warnf("tokenversion: provider refused %s %s (id %s) with HTTP %d; not retried",
                            event.type(), event.keycloakEvent(), event.id(), status);
                    return Outcome.REFUSED;
                }
                problem = "HTTP " + status;
            } catch (IOException | TimeoutException e) {
                problem = HttpExchange.describe(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return Outcome.FAILED;
            }
            if (attempt == 1) {
                LOG.debugf("tokenversion: sending %s (id %s) failed (%s); retrying once", event.type(), event.id(), problem);
                try {
                    Thread.sleep(settings.retryDelayMs());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return Outcome.FAILED;
                }
            } else {
                LOG.warnf("tokenversion: could not deliver %s %s (id %s, user %s, session %s) to %s: %s",
                        event.type(), event.keycloakEvent(), event.id(), event.userId(), event.sessionId(),
                        VersionResolver.forLog(settings.url()), problem);
            }
        }
        return Outcome.FAILED;
    }

    private int post(String body) throws IOException, InterruptedException, TimeoutException {
        return HttpExchange.postJson(settings.url(), settings.secret(), body, settings.connectTimeoutMs(),
                settings.requestTimeoutMs(), HttpResponse.BodyHandlers.discarding()).statusCode();
    }

    /** Waits a little for queued events, then stops. */
    @Override
    public void close() {
        executor.shutdown();
        try {
            if (!executor.awaitTermination(2, TimeUnit.SECONDS)) {
                int dropped = executor.shutdownNow().size();
                if (dropped > 0) {
                    LOG.warnf("tokenversion: %d queued event(s) dropped at shutdown", dropped);
                }
            }
        } catch (InterruptedException e) {
            executor.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }
}
