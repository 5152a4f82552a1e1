"""SPMD for SharQ: tensor/data-parallel layouts, validation, packed FP4 collectives."""

from sharq_jax.parallel.collectives import (PackedActivation, all_gather_packed,
                                            gather_bytes, pack_activation,
                                            sequence_parallel_traffic,
                                            unpack_activation)
from sharq_jax.parallel.layouts import (LinearKind, MeshAxes, linear_weight_specs,
                                        shard_quantized_weight, validate_linear_layout)
from sharq_jax.parallel.model import (MEGATRON_RULES, ShardingRule, data_sharding,
                                      model_partition_specs, quantize_sharded, shard_model,
                                      validate_model_layout)
