# ctest driver for crowdloss-count: train one epoch of CSRNet with PML and of SANet with the SANet
# loss on a tiny synthetic set, resume, evaluate, predict. Run with -DCOUNT=<exe> -DWORK=<dir>.
file(REMOVE_RECURSE "${WORK}")
set(EXE "${COUNT}")
include("${CMAKE_CURRENT_LIST_DIR}/cli_smoke.cmake")

# Every option is checked before any file is read or written, so a typo is reported as such
# whatever else is wrong, --data before --val, and a failed run leaves no output folder.
set(absent --data coco:${WORK}/absent_train.json --val coco:${WORK}/absent_val.json --out ${WORK}/never)
expect_error("typo in --data's format" "unknown --data format 'cocoo' \\(synthetic, coco, shanghaitech, qnrf, nwpu, jhu\\)"
             train --data cocoo:${WORK}/x.json --val coco:${WORK}/absent_val.json --out ${WORK}/never)
expect_error("unknown --loss" "unknown --loss 'bogus'" train ${absent} --loss bogus)
expect_error("bad --lr" "--lr must be > 0, got -1" train ${absent} --lr -1)
expect_error("--data read before --val" "absent_train.json" train ${absent})
expect_error("--val's format checked before --data is generated" "unknown --val format 'coc'"
             train --data synthetic:${WORK}/never_data --val coc:x --out ${WORK}/never)
expect_error("demo on an unknown device" "unknown --device 'tpu'" demo --device tpu --out ${WORK}/never_demo)
expect_absent(${WORK}/never)
expect_absent(${WORK}/never_data)
expect_absent(${WORK}/never_demo)
run("train --help" train --help)
expect_output("train --help" "FORMAT one of synthetic, coco, shanghaitech, qnrf, nwpu, jhu")
expect_output("train --help" "--lr FLOAT=0.0001 +learning rate")

set(data --data synthetic:${WORK}/train --val synthetic:${WORK}/val --synthetic-count 8 --workers 2)
run("train csrnet/pml" train ${data} --width 0.125 --crop 64 --batch 4 --epochs 1 --out ${WORK}/csrnet)
run("train --resume" train ${data} --width 0.125 --crop 64 --batch 4 --epochs 2 --out ${WORK}/csrnet --resume)
expect_lines("${WORK}/csrnet/metrics.jsonl" 2)  # one line per epoch, none lost or repeated by the resume
run("train sanet" train ${data} --recipe sanet --crop 64 --batch 2 --epochs 1 --out ${WORK}/sanet)
run("eval" eval --checkpoint ${WORK}/csrnet/best.pt --data coco:${WORK}/val/annotations.json)
expect_output("eval" "MAE [0-9.]+ RMSE [0-9.]+")
run("predict" predict --checkpoint ${WORK}/sanet/best.pt --out ${WORK}/predict ${WORK}/val/images/000000.png)
expect_output("predict" "people")
if(NOT EXISTS "${WORK}/predict/000000_density.png")
  message(FATAL_ERROR "predict wrote no ${WORK}/predict/000000_density.png")
endif()
# bench: the bare step against the trainer, printed and appended to a JSON list.
run("bench" bench --out ${WORK}/bench --width 0.125 --crop 64 --batch 2 --steps 2 --warmup-steps 1 --workers 1
    --json ${WORK}/bench/t.json)
expect_output("bench" "bare training step [0-9.]+ images/s, trainer [0-9.]+ images/s, ratio [0-9.]+")
run("bench again" bench --out ${WORK}/bench --width 0.125 --crop 64 --batch 2 --steps 2 --warmup-steps 0 --workers 1
    --json ${WORK}/bench/t.json)
file(READ "${WORK}/bench/t.json" bench_json)
string(JSON entries LENGTH "${bench_json}")
string(JSON program GET "${bench_json}" 1 program)
string(JSON ratio GET "${bench_json}" 1 ratio)
if(NOT entries EQUAL 2 OR NOT program STREQUAL "crowdloss-count" OR NOT ratio GREATER 0)
  message(FATAL_ERROR "bench --json: expected two entries of crowdloss-count with a ratio > 0:\n${bench_json}")
endif()
expect_error("bad --steps" "--steps must be >= 1, got 0" bench --out ${WORK}/bench --steps 0)
# Bad input is reported, not crashed on.
expect_failure("eval of a missing checkpoint" eval --checkpoint ${WORK}/absent.pt --data coco:${WORK}/val/annotations.json)
message(STATUS "crowdloss-count smoke: ${last_output}")
