package dev.exeunt.parallel.pipeline;

import dev.exeunt.model.io.TokenWindows;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.train.MicroBatchRunner;
import dev.exeunt.parallel.comm.ProcessGroup;
import dev.exeunt.parallel.comm.ReduceOp;
import dev.exeunt.parallel.comm.Work;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.Backprop;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Megatron's 1F1B schedule ({@link OneFOneB}) as the {@link MicroBatchRunner} of one pipeline stage's
 * {@link dev.exeunt.model.train.Trainer}: the step's micro-batches (the ones one rank accumulates over)
 * flow through the stages, so every layout gives the one-rank losses and weights.
 *
 * <p>A forward receives its input activation from the previous stage, runs the stage's layers
 * ({@link EarlyExitModel#forwardStage}) and sends its output on asynchronously; a backward receives the
 * gradient of that output, runs EE-LLM's auxiliary-loss backward with the stage's deferred exits
 * ({@link EarlyExitModel#backwardStage}) and sends the input's gradient back: no message beyond plain
 * 1F1B. Each microbatch's tensors belong to its own {@link Scope#standalone() standalone scope}, entered
 * by its forward and its backward and freed once its backward and sends are done (microbatches end first
 * in, first out, which nested scopes cannot express).
 *
 * <p>After the schedule the gradients of a tied head's copies are summed over the stages holding one, and
 * the losses over the stages. The trainer then reduces over tp and dp, clips with the norm over every
 * stage ({@link dev.exeunt.model.nn.PipelineParallel}) and updates.
 */
public final class OneFOneBRunner implements MicroBatchRunner, AutoCloseable {
    private final ProcessGroup pp;
    private final PipelineParallel stages;
    /** The stages holding a copy of the token embedding (first stage, tied final head, shared exit heads), or null. */
    private final ProcessGroup embeddingCopies;
    private final String embeddingName;
    private final int stage, count;

    /** Collective over the pipeline group (it finds the stages that hold the token embedding). */
    public OneFOneBRunner(EarlyExitModel model, ProcessGroupPipelineParallel pipeline) {
        this.pp = pipeline.group();
        this.stages = pipeline;
        this.stage = pp.rank();
        this.count = pp.size();
        if (model.stage().index() != stage || model.stage().count() != count) {
            throw new IllegalArgumentException("the model is " + model.stage() + " but this rank is pipeline stage " + stage + " of " + count);
        }
        this.embeddingName = model.config().family() == dev.exeunt.model.config.Family.GPT2 ? "wte.weight" : "model.embed_tokens.weight";
        boolean holds = model.parameters().has(embeddingName);
        ProcessGroup copies = pp.split(holds ? 1 : 0, stage);
        if (holds && copies.size() > 1) {
            this.embeddingCopies = copies;
        } else {
            copies.close();
            this.embeddingCopies = null;
        }
    }

    /** A message in flight and what to free once it (and its microbatch) is done. */
    private record Pending(List<Work> works, Runnable release) {}

    @Override
    public double[] run(EarlyExitModel model, List<TokenWindows.Batch> micro, int seqLen, int it, Backprop.LeafListener lastFinals) {
        int m = micro.size();
        int rows = micro.get(0).size();
        Scope[] owners = new Scope[m];
        EarlyExitModel.StageForward[] forwards = new EarlyExitModel.StageForward[m];
        Work[] activationSends = new Work[m];
        List<Pending> pending = new ArrayList<>();
        double[] sums = new double[2 + model.config().exits().size()]; // this stage's share
        try {
            for (OneFOneB.Action a : OneFOneB.schedule(stage, count, m)) {
                int i = a.micro();
                if (a.forward()) {
                    owners[i] = Scope.standalone();
                    try (var in = owners[i].enter()) {
                        Tensor input = stage == 0 ? Tensor.ofInts(micro.get(i).inputs(), rows, seqLen)
                                : receive(model, activationShape(model, rows, seqLen), stage - 1, 2 * i);
                        forwards[i] = model.forwardStage(input, it);
                        if (stage < count - 1) activationSends[i] = pp.sendAsync(contiguous(forwards[i].output()), stage + 1, 2 * i);
                    }
                } else {
                    Work gradSend = null;
                    try (var in = owners[i].enter()) {
                        Tensor grad = stage == count - 1 ? null : receive(model, activationShape(model, rows, seqLen), stage + 1, 2 * i + 1);
                        Tensor targets = Tensor.ofInts(micro.get(i).targets(), rows, seqLen);
                        var l = model.backwardStage(forwards[i], grad, targets, null, 1f / m, null);
                        MicroBatchRunner.add(sums, model.exits(), l, m);
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
        stages.sumOverStages(sums);
        return sums;
    }

    private static int[] activationShape(EarlyExitModel model, int rows, int seqLen) {
        var tp = model.tensorParallel();
        int positions = tp.sequenceParallel() ? seqLen / tp.size() : seqLen;
        return new int[] {rows, positions, model.config().dModel()};
    }

    private Tensor receive(EarlyExitModel model, int[] shape, int from, int tag) {
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

    @Override
    public void close() {
        if (embeddingCopies != null) embeddingCopies.close();
    }
}
