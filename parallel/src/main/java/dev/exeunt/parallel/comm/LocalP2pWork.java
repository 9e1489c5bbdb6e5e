package dev.exeunt.parallel.comm;

/**
 * A send or a receive on the local engine. A send waits in the destination's queue until a receive
 * with the same (source, tag) is posted, or a receive waits for such a send; whichever comes second
 * copies the bytes (so a send completes when it has been received, as a rendezvous send does under MPI).
 * Matching is first-posted first, so messages with equal (source, tag) arrive in the order sent.
 */
final class LocalP2pWork implements Work, LocalWorld.Completable {
    private final LocalGroupState group;
    private final boolean isSend;
    private final int from;
    private final int to;
    final int tag;
    final LocalBuffer buffer;
    private boolean matched;
    private String error;
    private boolean done;
    private CommException failure;

    /** Called with the world's lock held. */
    LocalP2pWork(LocalGroupState group, boolean isSend, int from, int to, int tag, LocalBuffer buffer) {
        this.group = group;
        this.isSend = isSend;
        this.from = from;
        this.to = to;
        this.tag = tag;
        this.buffer = buffer;
        group.world.track(this);
    }

    /** Posts this operation: matches the first waiting counterpart, or queues itself (lock held). */
    void post() {
        var counterparts = isSend ? group.postedRecvs.get(to) : group.unmatchedSends.get(to);
        for (int i = 0; i < counterparts.size(); i++) {
            LocalP2pWork c = counterparts.get(i);
            if (c.from == from && c.tag == tag) {
                counterparts.remove(i);
                if (isSend) transfer(this, c);
                else transfer(c, this);
                group.world.signalAll();
                return;
            }
        }
        (isSend ? group.unmatchedSends.get(to) : group.postedRecvs.get(to)).add(this);
        group.world.signalAll();
    }

    private static void transfer(LocalP2pWork send, LocalP2pWork recv) {
        if (send.buffer.dtype != recv.buffer.dtype || send.buffer.numel != recv.buffer.numel) {
            String e = "the send of " + send.buffer.describe() + " from rank " + send.worldRank(send.from) + " with tag "
                    + send.tag + " does not match the receive of " + recv.buffer.describe() + " on rank " + recv.worldRank(recv.to);
            send.error = e;
            recv.error = e;
        } else {
            recv.buffer.copyFrom(send.buffer.bytes, 0);
        }
        send.matched = true;
        recv.matched = true;
    }

    private int worldRank(int groupRank) {
        return group.worldRanks[groupRank];
    }

    private String op() {
        return isSend ? "send to rank " + worldRank(to) + " (tag " + tag + ")" : "recv from rank " + worldRank(from) + " (tag " + tag + ")";
    }

    @Override
    public void await() {
        if (done) {
            if (failure != null) throw failure;
            return;
        }
        LocalWorld w = group.world;
        int me = worldRank(isSend ? from : to);
        int peer = worldRank(isSend ? to : from);
        String op = op();
        w.lock();
        try {
            while (true) {
                w.checkAlive(op, me);
                if (error != null) throw new CommException(op + " on rank " + me + ": " + error);
                if (matched) break;
                if (w.finished(peer)) {
                    throw new CommException(op + " on rank " + me + ": rank " + peer + " returned from its body without a matching "
                            + (isSend ? "receive" : "send"));
                }
                w.awaitChange(op, me);
            }
        } catch (CommException e) {
            failure = e;
            throw e;
        } finally {
            w.unlock();
            release();
        }
    }

    @Override
    public boolean test() {
        if (!done) group.world.finishIfReady(this, () -> matched);
        return done;
    }

    @Override
    public void release() {
        if (done) return;
        done = true;
        LocalWorld w = group.world;
        w.lock();
        try {
            w.untrack(this);
            // never matched (failure, or the job ended): a later post must not find this one
            group.unmatchedSends.get(to).remove(this);
            group.postedRecvs.get(to).remove(this);
        } finally {
            w.unlock();
        }
        buffer.close();
    }
}
