package dev.tokenversion.keycloak;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;

/** A loopback HTTP server whose answer the test sets: a status and body, or a hang. */
final class StubServer implements AutoCloseable {

    record Received(String method, String path, String contentType, String secret, String body) {
    }

    /** A status and body for one request. */
    record Reply(int status, String body) {
    }

    /** Answers for one path (exact match on the path), computed per request: the feed follower's tests. */
    private final java.util.Map<String, java.util.function.Function<String, Reply>> routes =
            new java.util.concurrent.ConcurrentHashMap<>();

    /** {@code handler} gets the query string (or "") and answers. */
    void route(String path, java.util.function.Function<String, Reply> handler) {
        routes.put(path, handler);
    }

    long count(String path) {
        return received.stream().filter(r -> r.path().equals(path)).count();
    }

    private final HttpServer server;
    final List<Received> received = new CopyOnWriteArrayList<>();
    private volatile int status = 200;
    private volatile String body = "{}";
    private volatile boolean hang;
    private final CountDownLatch release = new CountDownLatch(1);

    StubServer() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.setExecutor(Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "stub-server");
            t.setDaemon(true);
            return t;
        }));
        server.createContext("/", this::handle);
        server.start();
    }

    URI uri(String path) {
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + path);
    }

    void answer(int status, String body) {
        this.status = status;
        this.body = body;
        this.hang = false;
    }

    void hang() {
        this.hang = true;
    }

    private void handle(HttpExchange ex) throws IOException {
        String reqBody = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
        received.add(new Received(ex.getRequestMethod(), ex.getRequestURI().getPath(),
                ex.getRequestHeaders().getFirst("Content-Type"),
                ex.getRequestHeaders().getFirst(ClaimsClient.SECRET_HEADER), reqBody));
        java.util.function.Function<String, Reply> route = routes.get(ex.getRequestURI().getPath());
        if (route != null) {
            String q = ex.getRequestURI().getRawQuery();
            Reply reply = route.apply(q == null ? "" : q);
            byte[] out = reply.body().getBytes(StandardCharsets.UTF_8);
            ex.getResponseHeaders().add("Content-Type", "application/json");
            ex.sendResponseHeaders(reply.status(), out.length == 0 ? -1 : out.length);
            try (OutputStream os = ex.getResponseBody()) {
                os.write(out);
            }
            return;
        }
        if (hang) {
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        byte[] out = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().add("Content-Type", "application/json");
        ex.sendResponseHeaders(status, out.length == 0 ? -1 : out.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(out);
        }
    }

    @Override
    public void close() {
        release.countDown();
        server.stop(0);
    }

    /** A loopback port with nothing listening (bound, then closed). */
    static int closedPort() throws IOException {
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }
}
