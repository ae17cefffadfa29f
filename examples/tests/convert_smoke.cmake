# ctest driver: builds a two-image JHU-layout fixture (1×1 PNGs written as bytes), converts it
# with crowdloss-convert, and checks the JSON it wrote. Run with -DCONVERT=<exe> -DWORK=<dir>.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/jhu/images" "${WORK}/jhu/gt")
# A valid 1×1 grey PNG.
set(png "89504e470d0a1a0a0000000d4948445200000001000000010800000000376ef9240000000a49444154789c6360000000020001e221bc330000000049454e44ae426082")
foreach(name 0001 0002)
  string(REGEX REPLACE "(..)" "\\\\x\\1" escaped "${png}")
  file(WRITE "${WORK}/jhu/images/${name}.png" "")
  execute_process(COMMAND printf "${escaped}" OUTPUT_FILE "${WORK}/jhu/images/${name}.png")
endforeach()
file(WRITE "${WORK}/jhu/gt/0001.txt" "0.5 0.5 1 1 0 0\n0.2 0.7 1 1 0 0\n")
file(WRITE "${WORK}/jhu/gt/0002.txt" "")
execute_process(COMMAND "${CONVERT}" --format jhu --root "${WORK}/jhu" --out "${WORK}/out.json"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "2 images, 2 heads")
  message(FATAL_ERROR "crowdloss-convert failed (${rc}): ${out}${err}")
endif()
file(READ "${WORK}/out.json" json)
string(JSON n_images LENGTH "${json}" images)
string(JSON n_ann LENGTH "${json}" annotations)
string(JSON name GET "${json}" images 0 file_name)
if(NOT n_images EQUAL 2 OR NOT n_ann EQUAL 2 OR NOT name STREQUAL "images/0001.png")
  message(FATAL_ERROR "unexpected JSON: ${n_images} images, ${n_ann} annotations, first file ${name}")
endif()
# A missing annotation file is reported with its path.
file(REMOVE "${WORK}/jhu/gt/0002.txt")
execute_process(COMMAND "${CONVERT}" --format jhu --root "${WORK}/jhu" --out "${WORK}/out.json"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "0002.txt")
  message(FATAL_ERROR "expected an error naming 0002.txt, got (${rc}): ${err}")
endif()
message(STATUS "crowdloss-convert: ${out}")
