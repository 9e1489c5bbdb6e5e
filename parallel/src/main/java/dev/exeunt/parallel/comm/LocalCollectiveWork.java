package dev.exeunt.parallel.comm;

import java.util.Arrays;
import java.util.function.Consumer;

/**
 * One rank's share of a collective round: await() waits for the round's combined result, copies this
 * rank's part out of it ({@code finish}) and then closes this rank's buffers, releasing their storage.
 */
final class LocalCollectiveWork implements Work, LocalWorld.Completable {
    private final LocalGroupState group;
    private final LocalRound round;
    private final String op;
    private final int rank;
    private final Consumer<Object> finish;
    private final LocalBuffer[] buffers;
    private boolean done;
    private CommException failure;
    private Object result;

    /** Called with the world's lock held, after this rank's arrival at {@code round}. */
    LocalCollectiveWork(LocalGroupState group, LocalRound round, String op, int rank, Consumer<Object> finish,
                        LocalBuffer... buffers) {
        this.group = group;
        this.round = round;
        this.op = op;
        this.rank = rank;
        this.finish = finish;
        this.buffers = buffers;
        group.world.track(this);
    }

    @Override
    public void await() {
        if (done) {
            if (failure != null) throw failure;
            return;
        }
        try {
            Object r = waitForResult();
            finish.accept(r);
            result = r;
        } catch (CommException e) {
            failure = e;
            throw e;
        } finally {
            release();
        }
    }

    @Override
    public boolean test() {
        if (!done) group.world.finishIfReady(this, () -> round.complete || round.error != null);
        return done;
    }

    /** The round's combined result (for split), after a successful await(). */
    Object result() {
        return result;
    }

    private Object waitForResult() {
        LocalWorld w = group.world;
        int me = group.worldRanks[rank];
        String waitingFor = op + " (call #" + round.call + " on the group of world ranks " + Arrays.toString(group.worldRanks) + ")";
        w.lock();
        try {
            while (true) {
                w.checkAlive(op, me);
                if (round.error != null) throw new CommException(op + " on rank " + me + ": " + round.error);
                if (round.complete) return round.result;
                for (int q = 0; q < round.arrived.length; q++) {
                    if (!round.arrived[q] && w.finished(group.worldRanks[q])) {
                        throw new CommException(op + " on rank " + me + ": rank " + group.worldRanks[q]
                                + " returned from its body without making call #" + round.call + " (" + round.descriptor
                                + ") on this group");
                    }
                }
                w.awaitChange(waitingFor, me);
            }
        } finally {
            w.unlock();
        }
    }

    @Override
    public void release() {
        if (done) return;
        done = true;
        LocalWorld w = group.world;
        w.lock();
        try {
            round.depart();
            w.untrack(this);
        } finally {
            w.unlock();
        }
        for (LocalBuffer b : buffers) {
            if (b != null) b.close();
        }
    }
}
