package dev.exeunt.parallel.comm;

import java.lang.foreign.Arena;

/**
 * One collective call, the k-th on its group: every rank arrives with its contribution; the last to
 * arrive combines them all (into memory from {@link #arena}) and the others copy their part out of the
 * result; the arena is closed when every rank has left. All fields are guarded by the world's lock.
 */
final class LocalRound {
    final long call;
    /** The first arrival's description of the call (op, dtype, sizes); the others must match it. */
    final String descriptor;
    /** World rank of the first arrival, for the mismatch message. */
    final int firstWorldRank;
    final Object[] contributions;
    final boolean[] arrived;
    int arrivals;
    int departures;
    boolean complete;
    String error;
    Object result;
    Arena arena;

    LocalRound(long call, int size, String descriptor, int firstWorldRank) {
        this.call = call;
        this.descriptor = descriptor;
        this.firstWorldRank = firstWorldRank;
        this.contributions = new Object[size];
        this.arrived = new boolean[size];
    }

    /** Records the arrival of group rank {@code r} (world rank {@code worldRank}); a call that does not match the first one fails the whole round. */
    void arrive(int r, int worldRank, String what, Object contribution) {
        arrived[r] = true;
        arrivals++;
        contributions[r] = contribution;
        if (!what.equals(descriptor) && error == null) {
            error = "collective mismatch at call #" + call + " on this group: rank " + firstWorldRank + " called "
                    + descriptor + ", rank " + worldRank + " called " + what;
        }
    }

    /** Records rank {@code r}'s exit; the last one frees the combined result. */
    void depart() {
        departures++;
        if (departures == contributions.length && arena != null) {
            arena.close();
            arena = null;
        }
    }
}
