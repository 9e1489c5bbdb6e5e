package dev.exeunt.model.checkpoint;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.testing.LeakCheck;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The layout checked before allocation names exactly the tensors, with the shapes, that the built model has. */
@ExtendWith(LeakCheck.class)
class CheckpointLayoutTest {
    static List<ExitConfig> everyKind(boolean shared) {
        return List.of(new ExitConfig(1, ExitConfig.Placement.PRE, ExitKind.EMBEDDING, shared, WeightSchedule.constant(1), 1),
                ExitConfig.post(1, ExitKind.NORM, 1), ExitConfig.post(2, ExitKind.MLP, 1), ExitConfig.post(2, ExitKind.LAYER, 1));
    }

    @Test
    void layoutMatchesTheBuiltModelForEveryFamilyAndExitKind() {
        List<ModelConfig> configs = List.of(ModelConfig.gpt2(50, 8, 3, 2, 16, everyKind(true)),
                ModelConfig.gpt2(50, 8, 3, 2, 16, List.of()).withTiedEmbeddings(false),
                ModelConfig.llama(50, 8, 3, 2, 1, 12, 16, everyKind(false)),
                ModelConfig.llama(50, 8, 3, 2, 2, 12, 16, List.of()).withTiedEmbeddings(true));
        for (ModelConfig c : configs) {
            try (var m = EarlyExitModel.create(c, Device.CPU, 1)) {
                var built = m.parameters().all();
                var expected = CheckpointLayout.expected(c);
                assertEquals(List.copyOf(built.keySet()), List.copyOf(expected.keySet()), c.toString());
                for (var e : built.entrySet()) {
                    assertArrayEquals(Arrays.stream(e.getValue().shape()).asLongStream().toArray(), expected.get(e.getKey()), e.getKey());
                }
            }
        }
    }
}
