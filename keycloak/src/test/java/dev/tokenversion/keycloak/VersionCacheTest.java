package dev.tokenversion.keycloak;

import org.junit.jupiter.api.Test;

import java.util.OptionalLong;

import static org.junit.jupiter.api.Assertions.*;

class VersionCacheTest {

    @Test
    void evictsLeastRecentlyUsedBeyondTheBound() {
        VersionCache c = new VersionCache(3);
        c.remember("a", 1);
        c.remember("b", 2);
        c.remember("c", 3);
        assertEquals(OptionalLong.of(1), c.lookup("a")); // a is now most recently used
        c.remember("d", 4);
        assertEquals(3, c.size());
        assertTrue(c.lookup("b").isEmpty(), "b was the least recently used");
        assertEquals(OptionalLong.of(1), c.lookup("a"));
        assertEquals(OptionalLong.of(4), c.lookup("d"));
    }

    @Test
    void staysBoundedUnderManyUsers() {
        VersionCache c = new VersionCache(1000);
        for (int i = 0; i < 50_000; i++) {
            c.remember(VersionCache.key("realm", "user-" + i, "http://x"), i);
        }
        assertEquals(1000, c.size());
        assertEquals(OptionalLong.of(49_999), c.lookup(VersionCache.key("realm", "user-49999", "http://x")));
        assertTrue(c.lookup(VersionCache.key("realm", "user-0", "http://x")).isEmpty());
    }

    @Test
    void neverLowersARememberedVersion() {
        VersionCache c = new VersionCache(10);
        c.remember("k", 5);
        c.remember("k", 3);
        assertEquals(OptionalLong.of(5), c.lookup("k"));
        c.remember("k", 7);
        assertEquals(OptionalLong.of(7), c.lookup("k"));
    }

    @Test
    void keysSeparateRealmsUsersAndEndpoints() {
        assertNotEquals(VersionCache.key("r1", "u", "e"), VersionCache.key("r2", "u", "e"));
        assertNotEquals(VersionCache.key("r", "u1", "e"), VersionCache.key("r", "u2", "e"));
        assertNotEquals(VersionCache.key("ab", "c", "e"), VersionCache.key("a", "bc", "e"));
    }

    @Test
    void rejectsNonPositiveBound() {
        assertThrows(IllegalArgumentException.class, () -> new VersionCache(0));
    }
}
