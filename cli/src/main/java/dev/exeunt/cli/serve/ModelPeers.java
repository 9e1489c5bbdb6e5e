package dev.exeunt.cli.serve;

import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.generate.NewlineBan;
import dev.exeunt.model.generate.TokenListener;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The other ranks of a sharded or staged model, seen from the server on world rank 0: before every
 * generation the server announces it (the prompts and the config, broadcast over the world), and every
 * other rank, in {@link #follow}, generates the same on its part of the model, so the ranks make the same
 * collective calls in the same order. Stops the server's listener asks for reach them through the
 * generator's stop agreement. {@link #shutdown} ends their loop.
 */
public final class ModelPeers {
    private static final int SHUTDOWN = 0, GENERATE = 1;
    private final ProcessGroup world;

    public ModelPeers(ProcessGroup world) {
        if (world.rank() != 0) throw new IllegalArgumentException("the server announces from world rank 0, not rank " + world.rank());
        this.world = world;
    }

    /** Tells the other ranks to generate {@code prompts} with {@code cfg}, as this rank is about to. */
    void announce(List<int[]> prompts, GenerationConfig cfg) {
        send(GENERATE, encode(prompts, cfg));
    }

    /** Ends the other ranks' {@link #follow} loops; call once, after the last generation. */
    public void shutdown() {
        send(SHUTDOWN, new int[0]);
    }

    private void send(int kind, int[] payload) {
        try (Tensor header = Tensor.ofInts(new int[] {kind, payload.length}, 2)) {
            world.broadcast(header, 0);
        }
        if (payload.length == 0) return;
        try (Tensor body = Tensor.ofInts(payload, payload.length)) {
            world.broadcast(body, 0);
        }
    }

    /** A rank other than 0: generates each announced request on {@code gen} until the shutdown. */
    public static void follow(ProcessGroup world, Generator gen, NewlineBan ban) {
        while (true) {
            int[] header;
            try (Tensor h = Tensor.empty(DType.I32, Device.CPU, 2)) {
                world.broadcast(h, 0);
                header = h.toIntArray();
            }
            if (header[0] == SHUTDOWN) return;
            int[] payload;
            try (Tensor b = Tensor.empty(DType.I32, Device.CPU, header[1])) {
                world.broadcast(b, 0);
                payload = b.toIntArray();
            }
            var request = decode(payload, ban);
            gen.generate(request.prompts(), request.cfg(), TokenListener.NONE);
        }
    }

    record Request(List<int[]> prompts, GenerationConfig cfg) {}

    /**
     * Ints: the prompt count and lengths, the ids, the exit layers (-1: all), the config's ints and flags,
     * then its doubles and seed as pairs of ints (their bits).
     */
    static int[] encode(List<int[]> prompts, GenerationConfig c) {
        List<Integer> out = new ArrayList<>();
        out.add(prompts.size());
        for (int[] p : prompts) out.add(p.length);
        for (int[] p : prompts) for (int id : p) out.add(id);
        out.add(c.exitLayers() == null ? -1 : c.exitLayers().length);
        if (c.exitLayers() != null) for (int l : c.exitLayers()) out.add(l);
        out.addAll(List.of(c.maxNewTokens(), c.topK(), c.eosId(), c.vocabLimit(), c.draftMax(), c.kvFill().ordinal(),
                (c.newlineBan() != null ? 1 : 0) | (c.exitProbs() ? 2 : 0) | (c.speculative() ? 4 : 0) | (c.adaptive() ? 8 : 0)));
        for (long bits : new long[] {Double.doubleToRawLongBits(c.temperature()), Double.doubleToRawLongBits(c.topP()),
                Double.doubleToRawLongBits(c.threshold()), Double.doubleToRawLongBits(c.topPDecay()), Double.doubleToRawLongBits(c.topPBound()),
                c.seed()}) {
            out.add((int) bits);
            out.add((int) (bits >>> 32));
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    static Request decode(int[] in, NewlineBan ban) {
        int at = 0, n = in[at++];
        int[] lengths = new int[n];
        for (int i = 0; i < n; i++) lengths[i] = in[at++];
        List<int[]> prompts = new ArrayList<>();
        for (int len : lengths) {
            prompts.add(java.util.Arrays.copyOfRange(in, at, at + len));
            at += len;
        }
        int nExits = in[at++];
        int[] exits = nExits < 0 ? null : java.util.Arrays.copyOfRange(in, at, at + nExits);
        at += Math.max(0, nExits);
        int maxNew = in[at++], topK = in[at++], eos = in[at++], vocabLimit = in[at++], draftMax = in[at++], kvFill = in[at++], flags = in[at++];
        long[] v = new long[6];
        for (int i = 0; i < v.length; i++, at += 2) v[i] = (in[at] & 0xFFFFFFFFL) | ((long) in[at + 1] << 32);
        var cfg = new GenerationConfig(maxNew, Double.longBitsToDouble(v[0]), topK, Double.longBitsToDouble(v[1]), v[5], Double.longBitsToDouble(v[2]),
                exits, eos, Double.longBitsToDouble(v[3]), Double.longBitsToDouble(v[4]), vocabLimit, (flags & 1) != 0 ? ban : null, (flags & 2) != 0,
                (flags & 4) != 0, draftMax, GenerationConfig.KvFill.values()[kvFill], (flags & 8) != 0);
        return new Request(prompts, cfg);
    }
}
