package dev.exeunt.model.generate;

import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Tensor;
import java.util.List;

/**
 * What the pipeline stages of one generation exchange (KV recomputation, EARLY-EXIT.md section 3,
 * method 1): each step a stage hands the next one, per sequence, the rows that go on (its pending rows
 * for the stage's first layer and the current token's, or none when the token exited on or before the
 * stage), and after the step every stage learns each sequence's token from whichever stage produced
 * it, so all of them keep the same tokens, positions and stopping state.
 */
final class StageLink {
    private final PipelineParallel pp;
    private final int dModel;

    StageLink(PipelineParallel pp, int dModel) {
        this.pp = pp;
        this.dModel = dModel;
    }

    boolean last() {
        return pp.stage() == pp.stages() - 1;
    }

    /** Rows per sequence from the previous stage, then the rows themselves [sum, D] (null when none). */
    Tensor receive(int[] counts) {
        Tensor c = Tensor.empty(DType.I32, dev.exeunt.tensor.Device.CPU, counts.length);
        pp.recv(c, pp.stage() - 1);
        System.arraycopy(c.toIntArray(), 0, counts, 0, counts.length);
        int rows = 0;
        for (int n : counts) rows += n;
        if (rows == 0) return null;
        Tensor x = Tensor.empty(DType.F32, dev.exeunt.tensor.Device.CPU, rows, dModel);
        pp.recv(x, pp.stage() - 1);
        return x;
    }

    /** The prompt's rows [rows, D] from the previous stage. */
    Tensor receiveRows(int rows) {
        Tensor x = Tensor.empty(DType.F32, dev.exeunt.tensor.Device.CPU, rows, dModel);
        pp.recv(x, pp.stage() - 1);
        return x;
    }

    /** The counterpart of {@link #receive}: rows per sequence, then the rows (none sent when null). */
    void send(int[] counts, Tensor rows) {
        pp.send(Tensor.ofInts(counts, counts.length), pp.stage() + 1);
        if (rows != null) pp.send(rows.contiguous(), pp.stage() + 1);
    }

    /** The counterpart of {@link #receiveRows}. */
    void sendRows(Tensor rows) {
        pp.send(rows.contiguous(), pp.stage() + 1);
    }

    /**
     * After a step in which sequence i had handed out {@code before[i]} tokens: the stage that produced
     * its next token tells the others, which hand out the same token (stops are agreed after, {@link StopAgreement}).
     */
    void agree(List<DecodeSequence> seqs, int[] before, DecodeCall call) {
        int n = seqs.size();
        double[] emitted = new double[4 * n];
        for (int i = 0; i < n; i++) {
            DecodeSequence s = seqs.get(i);
            if (s.out.size() == before[i]) continue;
            GeneratedToken t = s.out.get(before[i]);
            emitted[4 * i] = 1;
            emitted[4 * i + 1] = t.token();
            emitted[4 * i + 2] = t.exitLayer();
            emitted[4 * i + 3] = t.probability();
        }
        pp.sumOverStages(emitted);
        for (int i = 0; i < n; i++) {
            DecodeSequence s = seqs.get(i);
            if (emitted[4 * i] != 1) {
                throw new IllegalStateException("sequence " + s.index + ": " + (int) emitted[4 * i] + " pipeline stages produced its token, not one");
            }
            if (s.out.size() == before[i]) call.accept(s, (int) emitted[4 * i + 1], (int) emitted[4 * i + 2], (float) emitted[4 * i + 3]);
        }
    }
}
