package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.Exit;
import dev.exeunt.model.train.GradientSync;
import dev.exeunt.model.train.TensorParallelGradients;
import dev.exeunt.model.train.TrainConfig;
import dev.exeunt.parallel.ParallelState;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.parallel.comm.Work;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import dev.exeunt.tensor.optim.AdamW;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Training of one pipeline stage (of one tensor- and data-parallel rank) with Megatron's 1F1B schedule
 * ({@link OneFOneB}) over the {@code --grad-accum} microbatches of each step, which are the microbatches
 * one rank accumulates over, so every layout gives the one-rank losses and weights.
 *
 * <p>A forward receives its input activation from the previous stage, runs the stage's layers
 * ({@link EarlyExitModel#forwardStage}) and sends its output on asynchronously; a backward receives the
 * gradient of that output, runs EE-LLM's auxiliary-loss backward with the stage's deferred exits
 * ({@link EarlyExitModel#backwardStage}) and sends the input's gradient back: no message beyond plain
 * 1F1B. Each microbatch's tensors belong to its own {@link Scope#standalone() standalone scope}, entered
 * by its forward and its backward and freed once its backward and sends are done (microbatches end first
 * in, first out, which nested scopes cannot express).
 *
 * <p>After the schedule: gradients of a tied head's copies are summed over the stages holding one, the
 * tensor- and data-parallel reductions run as in {@link dev.exeunt.model.train.Trainer}, clipping uses the
 * norm over every stage (each copy counted once), and AdamW updates the stage's parameters.
 */
public final class PipelineTrainer implements AutoCloseable {
    /** One step's losses as one rank logs them: total, final and each exit's (by exit index), and the gradient norm. */
    public record StepLosses(double total, double finalLoss, double[] exitLosses, double gradNorm) {}

    private final EarlyExitModel model;
    private final ParallelState state;
    private final ProcessGroup pp;
    private final GradientSync sync;
    private final TrainConfig cfg;
    private final TokenWindows.Batches batches;
    private final AdamW optimizer;
    /** The stages holding a copy of the token embedding (first stage, tied final head, shared exit heads), or null. */
    private final ProcessGroup embeddingCopies;
    private final String embeddingName;
    private final int stage, stages;

    public PipelineTrainer(EarlyExitModel model, ParallelState state, GradientSync sync, TokenWindows windows, TrainConfig cfg) {
        if (model.stage().index() != state.ppRank() || model.stage().count() != state.ppSize()) {
            throw new IllegalArgumentException("the model is " + model.stage() + " but this rank is pipeline stage " + state.ppRank()
                    + " of " + state.ppSize());
        }
        if (cfg.batchSize() % sync.ranks() != 0) {
            throw new IllegalArgumentException("batch size " + cfg.batchSize() + " is not divisible by the " + sync.ranks() + " data-parallel ranks");
        }
        this.model = model;
        this.state = state;
        this.pp = state.ppGroup();
        this.sync = sync;
        this.cfg = cfg;
        this.stage = state.ppRank();
        this.stages = state.ppSize();
        var split = cfg.valFraction() > 0 ? windows.split(cfg.valFraction()) : new TokenWindows.Split(windows.all(), new int[0]);
        this.batches = windows.batches(split.train(), cfg.batchSize(), cfg.seed(), true, true);
        this.optimizer = new AdamW(new AdamW.Settings((float) cfg.beta1(), (float) cfg.beta2(), 1e-8f, (float) cfg.weightDecay()));
        this.embeddingName = model.config().family() == dev.exeunt.model.config.Family.GPT2 ? "wte.weight" : "model.embed_tokens.weight";
        boolean holds = model.parameters().has(embeddingName);
        ProcessGroup copies = pp.split(holds ? 1 : 0, stage); // collective over the pipeline group
        if (holds && copies.size() > 1) {
            this.embeddingCopies = copies;
        } else {
            copies.close();
            this.embeddingCopies = null;
        }
    }

    /** A message in flight and what to free once it (and its microbatch) is done. */
    private record Pending(List<Work> works, Runnable release) {}

    /** One training step (iteration {@code it}): the schedule, the reductions, the update. Every rank returns the same losses. */
    public StepLosses step(int it) {
        int m = cfg.gradAccum();
        int rows = cfg.batchSize() / sync.ranks();
        int nExits = model.config().exits().size();
        model.parameters().zeroGrads();
        TokenWindows.Batch[] micro = new TokenWindows.Batch[m];
        for (int i = 0; i < m; i++) micro[i] = batches.next(sync.rank(), sync.ranks());
        Scope[] owners = new Scope[m];
        EarlyExitModel.StageForward[] forwards = new EarlyExitModel.StageForward[m];
        Work[] activationSends = new Work[m];
        List<Pending> pending = new ArrayList<>();
        double[] local = new double[2 + nExits]; // total, final, exits by index: this stage's share
        try {
            for (OneFOneB.Action a : OneFOneB.schedule(stage, stages, m)) {
                int i = a.micro();
                if (a.forward()) {
                    owners[i] = Scope.standalone();
                    try (var in = owners[i].enter()) {
                        Tensor input = stage == 0 ? Tensor.ofInts(micro[i].inputs(), rows, cfg.seqLen()) : receive(activationShape(rows), stage - 1, 2 * i);
                        forwards[i] = model.forwardStage(input, it);
                        if (stage < stages - 1) activationSends[i] = pp.sendAsync(contiguous(forwards[i].output()), stage + 1, 2 * i);
                    }
                } else {
                    Work gradSend = null;
                    try (var in = owners[i].enter()) {
                        Tensor grad = stage == stages - 1 ? null : receive(activationShape(rows), stage + 1, 2 * i + 1);
                        Tensor targets = Tensor.ofInts(micro[i].targets(), rows, cfg.seqLen());
                        var l = model.backwardStage(forwards[i], grad, targets, null, 1f / m, null);
                        local[0] += l.total() / m;
                        local[1] += l.finalLoss() / m;
                        List<Exit> exits = model.exits();
                        for (int k = 0; k < exits.size(); k++) local[2 + exits.get(k).index()] += l.exitLosses()[k] / m;
                        if (stage > 0) gradSend = pp.sendAsync(forwards[i].input().grad(), stage - 1, 2 * i + 1);
                    }
                    List<Work> works = new ArrayList<>();
                    if (activationSends[i] != null) works.add(activationSends[i]);
                    if (gradSend != null) works.add(gradSend);
                    Tensor input = forwards[i].input();
                    Scope owner = owners[i];
                    pending.add(new Pending(works, () -> {
                        if (input.requiresGrad()) input.clearGrad();
                        owner.close();
                    }));
                    forwards[i] = null;
                    owners[i] = null;
                }
                releaseFinished(pending, false);
            }
        } finally {
            releaseFinished(pending, true);
            for (Scope s : owners) if (s != null) s.close();
        }
        Map<String, Tensor> trainable = model.parameters().trainable();
        if (embeddingCopies != null && trainable.containsKey(embeddingName)) embeddingCopies.allReduce(trainable.get(embeddingName).grad(), ReduceOp.SUM);
        // Losses: each stage's share summed over the pipeline, then averaged over data-parallel replicas.
        double[] logged = sumOverPipeline(local);
        sync.averageScalars(logged);
        TensorParallelGradients.reducePartial(model.parameters(), trainable);
        sync.reduceGradients(trainable);
        // The norm over the whole model: each stage's share (a tied copy only where it is first), summed over stages.
        boolean countsEmbedding = stage == 0; // stage 0 always holds the embedding
        double sq = TensorParallelGradients.squaredNorm(model.parameters(), trainable, n -> !n.equals(embeddingName) || countsEmbedding);
        double norm = Math.sqrt(sumOverPipeline(new double[] {sq})[0]);
        TensorParallelGradients.scaleTo(trainable, norm, cfg.gradClip());
        optimizer.step(trainable, (float) cfg.lrAt(it));
        double[] exitLosses = new double[nExits];
        System.arraycopy(logged, 2, exitLosses, 0, nExits);
        return new StepLosses(logged[0], logged[1], exitLosses, norm);
    }

    private int[] activationShape(int rows) {
        var tp = model.tensorParallel();
        int positions = tp.sequenceParallel() ? cfg.seqLen() / tp.size() : cfg.seqLen();
        return new int[] {rows, positions, model.config().dModel()};
    }

    private Tensor receive(int[] shape, int from, int tag) {
        Tensor t = Tensor.empty(DType.F32, model.device(), shape);
        pp.recv(t, from, tag);
        return t;
    }

    private static Tensor contiguous(Tensor t) {
        try (var g = GradMode.noGrad()) {
            return Ops.contiguous(t.detach());
        }
    }

    /** Frees the microbatches whose messages are done (all of them, waiting, when {@code all}). */
    private static void releaseFinished(List<Pending> pending, boolean all) {
        for (var it = pending.iterator(); it.hasNext(); ) {
            Pending p = it.next();
            boolean done = true;
            for (Work w : p.works()) {
                if (all) w.await();
                else done &= w.test();
            }
            if (!done) continue;
            p.release().run();
            it.remove();
        }
    }

    /** Element-wise sums over the pipeline stages, in double precision (each value as two floats, high and low part). */
    private double[] sumOverPipeline(double[] values) {
        if (stages == 1) return values.clone();
        float[] parts = new float[2 * values.length];
        for (int i = 0; i < values.length; i++) {
            parts[2 * i] = (float) values[i];
            parts[2 * i + 1] = (float) (values[i] - parts[2 * i]);
        }
        try (Tensor t = Tensor.of(parts, parts.length)) {
            pp.allReduce(t, ReduceOp.SUM);
            float[] s = t.toFloatArray();
            double[] out = new double[values.length];
            for (int i = 0; i < values.length; i++) out[i] = (double) s[2 * i] + s[2 * i + 1];
            return out;
        }
    }

    @Override
    public void close() {
        optimizer.close();
        if (embeddingCopies != null) embeddingCopies.close();
    }
}
