package dev.tokenversion.keycloak;

import org.jboss.logging.Logger;

import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The cached mode's off-the-token-path claims calls: the first token of a subject this node has no answer for is
 * issued from the map at once (absent = 0), and the subject is queued here; one daemon thread makes the claims
 * call, so the provider learns the user (its {@code PROVISION_USER} hook creates the accounts row, as in direct
 * mode). Bounded ({@link #CAPACITY}), deduplicated by subject; while the provider is unavailable the job waits
 * and is retried when the breaker closes, so users who first logged in during an outage are provisioned after it.
 * An answer above the map's version is applied to the map (max), which can only make it more current.
 */
final class Provisioner {

    private static final Logger LOG = Logger.getLogger(Provisioner.class);

    static final int CAPACITY = 10_000;
    static final long OUTAGE_POLL_MS = 500;

    record Job(String seenKey, VersionResolver.Settings settings, ClaimsRequest request, FeedFollower follower) {
    }

    private final BlockingQueue<Job> queue = new ArrayBlockingQueue<>(CAPACITY);
    private final Set<String> pending = ConcurrentHashMap.newKeySet();
    private final VersionCache seen;
    private Thread thread;
    private volatile boolean stopping;
    private volatile boolean dropping;

    final AtomicLong provisioned = new AtomicLong();
    final AtomicLong dropped = new AtomicLong();

    Provisioner(VersionCache seen) {
        this.seen = seen;
    }

    /** Queues the claims call unless it is queued already; false when the queue is full (tried again at the
     * subject's next token). */
    boolean offer(Job job) {
        if (!pending.add(job.seenKey())) {
            return true;
        }
        if (!queue.offer(job)) {
            pending.remove(job.seenKey());
            dropped.incrementAndGet();
            if (!dropping) {
                dropping = true;
                LOG.warnf("tokenversion: provisioning queue full (%d subjects waiting for the provider); new "
                        + "subjects are queued again at their next token", CAPACITY);
            }
            return false;
        }
        start();
        return true;
    }

    int queued() {
        return queue.size();
    }

    private synchronized void start() {
        if (thread == null || !thread.isAlive()) {
            stopping = false;
            thread = new Thread(this::run, "tokenversion-provisioner");
            thread.setDaemon(true);
            thread.start();
        }
    }

    synchronized void stop() {
        stopping = true;
        if (thread != null) {
            thread.interrupt();
        }
    }

    private void run() {
        while (!stopping) {
            Job job;
            try {
                job = queue.poll(60, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                return;
            }
            if (job == null) {
                continue;
            }
            try {
                while (!stopping && !call(job)) {
                    Thread.sleep(OUTAGE_POLL_MS); // the provider is away: wait for it, keep the job
                }
            } catch (InterruptedException e) {
                return;
            } finally {
                pending.remove(job.seenKey());
            }
            if (queue.isEmpty()) {
                dropping = false;
            }
        }
    }

    /** True when done with the job (answered, or refused for good); false to retry after an outage. */
    private boolean call(Job job) {
        if (job.follower().providerUnavailable()) {
            return false;
        }
        VersionResolver.Settings s = job.settings();
        try {
            long v = ClaimsClient.fetch(s.endpoint(), s.secret(), job.request(), s.connectTimeoutMs(),
                    s.readTimeoutMs());
            job.follower().noteAvailable();
            seen.remember(job.seenKey(), v);
            job.follower().map().apply(job.request().issuer(), job.request().sub(), v);
            provisioned.incrementAndGet();
            return true;
        } catch (ClaimsClient.ClaimsException e) {
            if (e.unavailable()) {
                job.follower().noteUnavailable();
                return false;
            }
            LOG.warnf("tokenversion: claims call for new subject %s refused: %s", job.request().sub(), e.getMessage());
            return true;
        }
    }
}
