package dev.exeunt.parallel.comm;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What the ranks of one local group share (guarded by the world's lock): the collective calls in
 * progress, by call number, and per destination rank the sends not yet received and the receives not
 * yet matched.
 */
final class LocalGroupState {
    final LocalWorld world;
    /** World rank of each group rank. */
    final int[] worldRanks;
    final Map<Long, LocalRound> rounds = new HashMap<>();
    final List<List<LocalP2pWork>> unmatchedSends = new ArrayList<>();
    final List<List<LocalP2pWork>> postedRecvs = new ArrayList<>();

    LocalGroupState(LocalWorld world, int[] worldRanks) {
        this.world = world;
        this.worldRanks = worldRanks.clone();
        for (int r = 0; r < worldRanks.length; r++) {
            unmatchedSends.add(new ArrayList<>());
            postedRecvs.add(new ArrayList<>());
        }
    }

    int size() {
        return worldRanks.length;
    }
}
