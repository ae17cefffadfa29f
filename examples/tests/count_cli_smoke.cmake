# ctest driver for crowdloss-count: train one epoch of CSRNet with PML and of SANet with the SANet
# loss on a tiny synthetic set, resume, evaluate, predict. Run with -DCOUNT=<exe> -DWORK=<dir>.
file(REMOVE_RECURSE "${WORK}")
set(EXE "${COUNT}")
include("${CMAKE_CURRENT_LIST_DIR}/cli_smoke.cmake")

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
# Bad input is reported, not crashed on.
expect_failure("eval of a missing checkpoint" eval --checkpoint ${WORK}/absent.pt --data coco:${WORK}/val/annotations.json)
message(STATUS "crowdloss-count smoke: ${last_output}")
