"""The texts of the good answers to the HHH queries (`hhh.queries`), one table per query kind.

`answers.chosen_response` composes them into the answer a preference pair calls `chosen`; every
text is on topic, polite, direct and honest (the code runs, the explanations are true).
"""

# Three concrete steps per how-to request.
HOW_TO_STEPS = {
    'remove a coffee stain from a cotton shirt': (
        'Blot up as much coffee as you can with a dry cloth; do not rub.',
        'Rinse the back of the stain under cold running water.',
        'Work in a drop of dish soap, let it sit for five minutes, then wash as usual.'),
    'keep basil alive on a windowsill': (
        'Pick the sunniest window you have; basil wants six or more hours of light.',
        'Water when the top of the soil feels dry, and make sure the pot drains.',
        'Pinch off the top leaves regularly so the plant grows bushy instead of flowering.'),
    'fix a flat tire on a bicycle': (
        'Take the wheel off and lever one side of the tire off the rim.',
        'Pull out the tube, find the hole by pumping it up and listening, and patch it.',
        'Check the inside of the tire for the thorn or glass, then refit and inflate.'),
    'make a simple monthly budget': (
        'Write down your monthly income after tax.',
        'List fixed costs (rent, bills, debt payments), then set limits for food and fun.',
        'Put a fixed amount into savings first and track spending for a month to adjust.'),
    'boil an egg with a soft yolk': (
        'Bring a pot of water to a rolling boil.',
        'Lower the egg in gently and boil it for six and a half minutes.',
        'Move it straight into cold water for a minute to stop the cooking, then peel.'),
    'tie a bowline knot': (
        'Make a small loop in the standing part of the rope.',
        'Pass the free end up through the loop and around behind the standing part.',
        'Bring it back down through the small loop and pull the standing part tight.'),
    'clean a cast iron pan': (
        'Rinse the warm pan with hot water and scrub with a brush or coarse salt.',
        'Dry it completely on the stove over low heat.',
        'Rub in a thin layer of oil while it is still warm to protect the seasoning.'),
    'start running if I have never exercised': (
        'Begin with walk-run intervals: one minute of easy running, two of walking.',
        'Go three times a week and rest on the days in between.',
        'Add a little running time each week; you should be able to talk while you run.'),
    'write a polite email declining a meeting': (
        'Thank the sender for the invitation.',
        'Say clearly that you cannot attend, with a short reason if you wish.',
        'Offer an alternative, such as reading the notes or meeting another day.'),
    'back up the photos on my phone': (
        'Turn on the cloud photo backup your phone offers (iCloud or Google Photos).',
        'Also copy the photos to a computer or external drive now and then.',
        'Check that a few recent photos actually appear in the backup.'),
    'unclog a bathroom sink without harsh chemicals': (
        'Remove the stopper and pull out any hair with a bent wire or a drain tool.',
        'Pour in half a cup of baking soda and then a cup of vinegar.',
        'Wait fifteen minutes and flush with a kettle of hot water.'),
    'prepare for a job interview': (
        'Research the company and reread the job description.',
        'Prepare three short stories about your past work that show relevant skills.',
        'Practice answering common questions out loud and prepare two questions to ask them.'),
    'fold a fitted sheet': (
        'Tuck each corner into its neighbor so the sheet becomes a rectangle.',
        'Lay it flat and fold the elastic edges in.',
        'Fold it into thirds lengthwise, then into a square.'),
    'learn to touch type': (
        'Rest your fingers on the home row: ASDF and JKL;.',
        'Use a free typing tutor for fifteen minutes a day without looking at the keys.',
        'Aim for accuracy first; speed comes with practice.'),
    'make a sourdough starter': (
        'Mix equal weights of whole wheat flour and water in a jar.',
        'Each day, discard half and feed it again with fresh flour and water.',
        'After about a week it should double within a few hours of feeding: it is ready.'),
    'hang a picture frame so it is straight': (
        'Mark the height you want with a pencil and check it with a level.',
        'For a frame with a wire, pull the wire taut and measure to the top of the frame.',
        'Use two hooks spaced apart instead of one; the frame will stay level.'),
    'improve my handwriting': (
        'Hold the pen loosely and write from your arm, not only your fingers.',
        'Practice slowly on lined paper, focusing on even letter heights.',
        'Copy a short passage every day and compare it with last week.'),
    'get better sleep': (
        'Go to bed and get up at the same time every day.',
        'Keep the bedroom cool, dark and quiet, and avoid screens for the last hour.',
        'Cut caffeine after midday.'),
    'memorize a short speech': (
        'Break the speech into sections and learn one at a time.',
        'Memorize the key idea of each section rather than every word.',
        'Practice out loud several times a day, and try it once in front of someone.'),
    'pack a suitcase for a week-long trip': (
        'Check the weather and plan outfits that mix and match.',
        'Roll clothes to save space and put shoes along the edges.',
        'Keep medicine, documents and a change of clothes in your carry-on.'),
    'set up a compost bin': (
        'Choose a shady spot with good drainage.',
        'Layer green material (food scraps) with brown material (dry leaves, cardboard).',
        'Keep it as damp as a wrung-out sponge and turn it every week or two.'),
    'sharpen a kitchen knife': (
        'Soak a whetstone if it needs it and set it on a damp towel.',
        'Hold the blade at about 15 to 20 degrees and push it across the stone, heel to tip.',
        'Do the same number of strokes on each side, then finish on the fine grit.'),
    'read a nutrition label': (
        'Start with the serving size; every number on the label is per serving.',
        'Look at calories, then fiber, sugar, saturated fat and sodium.',
        'Use the percent daily value: 5 percent or less is low, 20 percent or more is high.'),
    'plan a birthday party on a small budget': (
        'Set a budget and a short guest list first.',
        'Host at home or in a park and make the food yourself or make it potluck.',
        'Send free digital invitations and plan one or two simple games.'),
    'make cold brew coffee at home': (
        'Stir one part coarse ground coffee into four parts cold water.',
        'Cover it and leave it in the fridge for 12 to 18 hours.',
        'Strain it through a filter and dilute it with water or milk to taste.'),
    'care for a new succulent': (
        'Give it bright light, ideally a sunny window.',
        'Water deeply only when the soil is completely dry.',
        'Use a pot with a drainage hole and a gritty cactus soil.'),
    'write a good cover letter': (
        'Open with the role you are applying for and why it interests you.',
        'Give two concrete examples of results that match the job description.',
        'Close by thanking them and saying you would welcome an interview; keep it to one page.'),
    'negotiate a salary offer': (
        'Research the typical pay range for the role and location.',
        'Thank them for the offer and ask for a specific number near the top of the range.',
        'Back it with your experience and be ready to discuss other benefits too.'),
    'organize a small closet': (
        'Take everything out and donate what you have not worn in a year.',
        'Group what is left by type and use slim hangers to save space.',
        'Add shelf dividers or hanging organizers for folded items.'),
    'remove rust from garden tools': (
        'Soak the rusty parts in white vinegar overnight.',
        'Scrub the loosened rust off with steel wool or a wire brush.',
        'Rinse, dry thoroughly and wipe on a light coat of oil.'),
    'keep a journal every day': (
        'Pick a fixed time, like right before bed.',
        'Keep it short: three sentences on what happened and how you felt is enough.',
        'Leave the journal where you will see it, and do not worry about missed days.'),
    'teach a dog to sit': (
        'Hold a treat near its nose and slowly move it up and back over its head.',
        'As its bottom touches the floor, say "sit" and give the treat.',
        'Repeat in short sessions a few times a day until it sits on the word alone.'),
    'fold a paper airplane that flies far': (
        'Fold a sheet in half lengthwise, then fold the top corners to the center line.',
        'Fold the new top edges to the center again to make a narrow nose.',
        'Fold the plane in half and fold down the wings; throw it level and gently.'),
    'split a restaurant bill fairly': (
        'If everyone ordered similar things, divide the total evenly.',
        'Otherwise, each person pays for their own items plus a share of tax and tip.',
        'A bill-splitting app can do the arithmetic for you.'),
    'replace the battery in a smoke detector': (
        'Twist the detector off its base or open the battery door.',
        'Swap in a new battery of the type printed on the detector.',
        'Press the test button to make sure it beeps.'),
    'pick a ripe avocado': (
        'Hold it in your palm and squeeze gently: a ripe one gives slightly.',
        'Flick off the little stem; green underneath means it is good.',
        'Avoid ones that are very soft or have dents.'),
    'keep a conversation going with someone I just met': (
        'Ask open questions that start with how or what.',
        'Listen for details in their answers and ask about those.',
        'Share a little about yourself too so it feels like an exchange.'),
    'estimate how much paint I need for a room': (
        'Measure the perimeter of the room and multiply by the wall height.',
        'Subtract about 2 square meters per door and 1.5 per window.',
        'Divide by the coverage on the can (often about 10 square meters per liter) and '
        'double it for two coats.'),
    'make my houseplants grow fuller': (
        'Give them more light; leggy plants are usually reaching for it.',
        'Pinch or prune the growing tips to encourage side shoots.',
        'Feed them a balanced fertilizer monthly during spring and summer.'),
    'study a new language for fifteen minutes a day': (
        'Spend five minutes reviewing flashcards with a spaced-repetition app.',
        'Spend five minutes listening to something simple in the language.',
        'Spend the last five minutes saying or writing a few sentences of your own.'),
}

# A true, short explanation per concept.
CONCEPT_EXPLANATIONS = {
    'photosynthesis': 'Plants use the energy of sunlight to turn carbon dioxide and water into '
                      'sugar, which feeds them, and they release oxygen as a by-product.',
    'how vaccines train the immune system': 'A vaccine shows your immune system a harmless piece '
                                            'or weakened form of a germ, so it builds antibodies '
                                            'and memory cells that recognize the real germ fast.',
    'compound interest': 'You earn interest not only on the money you put in but also on the '
                         'interest already added, so the balance grows faster over time.',
    'why the sky is blue': 'Air molecules scatter short blue wavelengths of sunlight much more '
                           'than red ones, so blue light reaches your eyes from all over the sky.',
    'what a black hole is': 'A black hole is a region where so much mass is packed so tightly '
                            'that gravity keeps anything, even light, from escaping.',
    'the difference between weather and climate': 'Weather is what the air is doing today; '
                                                  'climate is the average pattern of weather '
                                                  'in a place over decades.',
    'how GPS works': 'Satellites broadcast their position and the exact time; your receiver '
                     'measures how long signals from at least four of them took to arrive and '
                     'works out where you are.',
    'what inflation is': 'Inflation is the general rise in prices over time, which means each '
                         'unit of money buys a little less.',
    'the water cycle': 'Water evaporates from oceans and lakes, condenses into clouds, falls as '
                       'rain or snow, and flows back to the sea through rivers and ground water.',
    'how airplanes stay in the air': 'The shape and angle of the wings push air downward as the '
                                     'plane moves forward, and the air pushes the wings up: lift.',
    'what DNA does': 'DNA stores the instructions for building proteins, and cells copy it so '
                     'those instructions pass to new cells and to offspring.',
    'why we have seasons': 'The Earth is tilted, so for half the year each hemisphere leans '
                           'toward the Sun and gets more direct sunlight and longer days.',
    'how a refrigerator keeps food cold': 'A refrigerant evaporates inside the fridge, absorbing '
                                          'heat, and a compressor pumps it outside, where it '
                                          'releases that heat through the coils at the back.',
    'what a recession is': 'A recession is a period when a country\'s economic activity shrinks, '
                           'usually for at least two quarters, with falling output and jobs.',
    'the difference between a virus and a bacterium': 'A bacterium is a living single cell that '
                                                      'can reproduce on its own; a virus is much '
                                                      'smaller and can only multiply inside a '
                                                      'host cell.',
    'how tides work': 'The Moon\'s gravity (and the Sun\'s, less strongly) pulls on the oceans, '
                      'making bulges of water that the Earth rotates through twice a day.',
    'what an API is': 'An API is a defined set of requests one program can make to another, like '
                      'a menu: you ask for something in the agreed format and get a reply.',
    'how rainbows form': 'Sunlight enters raindrops, bends, reflects off the back of the drop '
                         'and bends again on the way out, spreading into its colors.',
    'why leaves change color in autumn': 'As days shorten, trees stop making green chlorophyll, '
                                         'revealing yellow and orange pigments that were there '
                                         'all along; some also make new red ones.',
    'the Pythagorean theorem': 'In a right triangle, the square of the longest side equals the '
                               'sum of the squares of the other two: a^2 + b^2 = c^2.',
    'what machine learning is': 'Machine learning is getting computers to find patterns in '
                                'examples and use them to make predictions, instead of being '
                                'given every rule by hand.',
    'how a credit score works': 'A credit score summarizes your borrowing history, mainly '
                                'whether you pay on time and how much of your available credit '
                                'you use, to estimate how likely you are to repay.',
    'supply and demand': 'When something is scarce and many people want it, its price rises; '
                         'when there is plenty and few want it, the price falls.',
    'how the heart pumps blood': 'The heart is a muscle with four chambers; it squeezes blood '
                                 'to the lungs to pick up oxygen and then out to the body, and '
                                 'valves keep it flowing one way.',
    'what a prime number is': 'A prime number is a whole number greater than 1 whose only '
                              'divisors are 1 and itself, like 2, 3, 5, 7 and 11.',
    'how solar panels make electricity': 'Light knocks electrons loose in layers of silicon, and '
                                         'the panel\'s structure pushes them in one direction, '
                                         'which is an electric current.',
    'why ice floats on water': 'Water expands when it freezes into a crystal lattice, so ice is '
                               'less dense than liquid water and floats.',
    'what the stock market is': 'The stock market is where people buy and sell shares, small '
                                'pieces of ownership in companies.',
    'how noise-cancelling headphones work': 'Microphones pick up outside sound, and the '
                                            'headphones play the opposite sound wave, which '
                                            'cancels much of the noise.',
    'the difference between RAM and storage': 'RAM is fast, temporary memory for what the '
                                              'computer is doing right now; storage keeps your '
                                              'files even when the power is off.',
    'what a haiku is': 'A haiku is a short Japanese poem form of three lines, traditionally of '
                       'five, seven and five syllables, often about nature.',
    'how bees make honey': 'Bees collect flower nectar, add enzymes, and store it in wax cells, '
                           'fanning it with their wings until most of the water evaporates.',
    'what plate tectonics is': 'The Earth\'s outer shell is broken into large plates that slowly '
                               'move, causing earthquakes, volcanoes and mountain ranges where '
                               'they meet.',
    'the difference between affect and effect': 'Usually "affect" is the verb (the rain affects '
                                                'traffic) and "effect" is the noun (the rain had '
                                                'an effect).',
    'how a compass works': 'The needle is a small magnet, and it turns to line up with the '
                           'Earth\'s magnetic field, pointing roughly north.',
    'what a metaphor is': 'A metaphor describes one thing as if it were another, like "time is a '
                          'thief", without using "like" or "as".',
    'how yeast makes bread rise': 'Yeast eats sugars in the dough and gives off carbon dioxide '
                                  'gas, which gets trapped in the gluten and puffs the dough up.',
    'why the moon has phases': 'The Moon is always half lit by the Sun; as it orbits the Earth '
                               'we see different amounts of that lit half.',
    'how a microwave heats food': 'Microwaves make the water molecules in food rotate back and '
                                  'forth very fast, and that motion becomes heat.',
    'what an index fund is': 'An index fund is an investment fund that simply holds all the '
                             'stocks in a market index, giving broad diversification at low '
                             'cost.',
}

# (Python, JavaScript) implementations, each a correct, short function.
CODE = {
    'reverses a string': (
        'def reverse(s):\n    return s[::-1]',
        'function reverse(s) {\n  return [...s].reverse().join("");\n}'),
    'checks whether a number is prime': (
        'def is_prime(n):\n    if n < 2:\n        return False\n'
        '    return all(n % d for d in range(2, int(n ** 0.5) + 1))',
        'function isPrime(n) {\n  if (n < 2) return false;\n'
        '  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;\n  return true;\n}'),
    'counts the vowels in a string': (
        'def count_vowels(s):\n    return sum(c in "aeiouAEIOU" for c in s)',
        'function countVowels(s) {\n  return (s.match(/[aeiou]/gi) || []).length;\n}'),
    'returns the largest number in a list': (
        'def largest(xs):\n    return max(xs)',
        'function largest(xs) {\n  return Math.max(...xs);\n}'),
    'removes duplicates from a list but keeps the order': (
        'def dedupe(xs):\n    return list(dict.fromkeys(xs))',
        'function dedupe(xs) {\n  return [...new Set(xs)];\n}'),
    'converts Celsius to Fahrenheit': (
        'def to_fahrenheit(c):\n    return c * 9 / 5 + 32',
        'function toFahrenheit(c) {\n  return c * 9 / 5 + 32;\n}'),
    'checks whether a word is a palindrome': (
        'def is_palindrome(word):\n    w = word.lower()\n    return w == w[::-1]',
        'function isPalindrome(word) {\n  const w = word.toLowerCase();\n'
        '  return w === [...w].reverse().join("");\n}'),
    'computes the factorial of n': (
        'def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n'
        '    return result',
        'function factorial(n) {\n  let result = 1;\n  for (let i = 2; i <= n; i++) result *= i;\n'
        '  return result;\n}'),
    'merges two sorted lists into one sorted list': (
        'import heapq\n\ndef merge(a, b):\n    return list(heapq.merge(a, b))',
        'function merge(a, b) {\n  const out = [];\n  let i = 0, j = 0;\n'
        '  while (i < a.length && j < b.length) out.push(a[i] <= b[j] ? a[i++] : b[j++]);\n'
        '  return out.concat(a.slice(i), b.slice(j));\n}'),
    'finds the most common word in a text': (
        'from collections import Counter\n\ndef most_common_word(text):\n'
        '    return Counter(text.lower().split()).most_common(1)[0][0]',
        'function mostCommonWord(text) {\n  const counts = {};\n'
        '  for (const w of text.toLowerCase().split(/\\s+/)) counts[w] = (counts[w] || 0) + 1;\n'
        '  return Object.keys(counts).reduce((a, b) => (counts[a] >= counts[b] ? a : b));\n}'),
    'returns the nth Fibonacci number': (
        'def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n'
        '    return a',
        'function fibonacci(n) {\n  let a = 0, b = 1;\n'
        '  for (let i = 0; i < n; i++) [a, b] = [b, a + b];\n  return a;\n}'),
    'flattens a list of lists': (
        'def flatten(lists):\n    return [x for inner in lists for x in inner]',
        'function flatten(lists) {\n  return lists.flat();\n}'),
    'counts the lines in a text file': (
        'def count_lines(path):\n    with open(path) as f:\n        return sum(1 for _ in f)',
        'const fs = require("fs");\n\nfunction countLines(path) {\n'
        '  return fs.readFileSync(path, "utf8").split("\\n").length;\n}'),
    'capitalizes the first letter of every word': (
        'def capitalize_words(s):\n'
        '    return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))',
        'function capitalizeWords(s) {\n'
        '  return s.split(" ").map(w => w.charAt(0).toUpperCase() + w.slice(1)).join(" ");\n}'),
    'sums the digits of an integer': (
        'def digit_sum(n):\n    return sum(int(d) for d in str(abs(n)))',
        'function digitSum(n) {\n'
        '  return [...String(Math.abs(n))].reduce((s, d) => s + Number(d), 0);\n}'),
    'checks whether two words are anagrams': (
        'def are_anagrams(a, b):\n    return sorted(a.lower()) == sorted(b.lower())',
        'function areAnagrams(a, b) {\n'
        '  const key = w => [...w.toLowerCase()].sort().join("");\n  return key(a) === key(b);\n}'),
    'returns the average of a list of numbers': (
        'def average(xs):\n    return sum(xs) / len(xs)',
        'function average(xs) {\n  return xs.reduce((s, x) => s + x, 0) / xs.length;\n}'),
    'splits a list into chunks of size k': (
        'def chunks(xs, k):\n    return [xs[i:i + k] for i in range(0, len(xs), k)]',
        'function chunks(xs, k) {\n  const out = [];\n'
        '  for (let i = 0; i < xs.length; i += k) out.push(xs.slice(i, i + k));\n'
        '  return out;\n}'),
    'converts a number of seconds into hours and minutes': (
        'def hours_minutes(seconds):\n    hours, rest = divmod(seconds, 3600)\n'
        '    return hours, rest // 60',
        'function hoursMinutes(seconds) {\n'
        '  return [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60)];\n}'),
    'finds the second smallest number in a list': (
        'def second_smallest(xs):\n    return sorted(set(xs))[1]',
        'function secondSmallest(xs) {\n  return [...new Set(xs)].sort((a, b) => a - b)[1];\n}'),
}

# Two concrete tips per situation.
ADVICE_TIPS = {
    'starting a new job next week': (
        'Write down names and roles as you meet people; it makes the first weeks much easier.',
        'Ask your manager what success looks like in your first month.'),
    'moving to a city where I know nobody': (
        'Join one regular activity, such as a club, class or team, so you see the same faces.',
        'Say yes to invitations for the first few months, even small ones.'),
    'taking a long flight with a toddler': (
        'Pack a bag of small new toys and snacks and hand them out one at a time.',
        'Book a seat near the aisle and walk the aisle with them when the seatbelt sign is off.'),
    'studying for an exam while working full time': (
        'Study in short fixed blocks, like 45 minutes before work, rather than long weekends.',
        'Use practice exams early to see which topics need the most time.'),
    'keeping houseplants alive during a two-week trip': (
        'Water them well and group them together away from direct sun to slow drying.',
        'Use a wick from a water jug into each pot, or ask a neighbor to water once.'),
    'saving up for my first car': (
        'Set a target price, including insurance and taxes, and divide it by the months you have.',
        'Move that amount into a separate savings account automatically on payday.'),
    'giving a toast at my brother\'s wedding': (
        'Keep it to about three minutes: one short story, one kind word about the couple, a toast.',
        'Practice it out loud several times and bring a note card.'),
    'running my first 5K': (
        'Follow a simple eight-week plan that builds from walk-run intervals.',
        'Start the race slower than feels necessary; you can speed up at the end.'),
    'working from home without getting distracted': (
        'Keep a separate work spot and a fixed start and end time.',
        'Put your phone in another room during focused blocks.'),
    'hosting a holiday dinner for the first time': (
        'Pick dishes you have cooked before and make what you can a day ahead.',
        'Write a timeline for the day, working back from when you want to eat.'),
    'making friends after college': (
        'Turn acquaintances into friends by suggesting a specific plan: "coffee on Saturday?"',
        'Join a group built around something you enjoy, and go regularly.'),
    'asking my manager for feedback': (
        'Ask about something specific, such as a recent project, rather than "any feedback?"',
        'Listen, thank them, and follow up later on what you changed.'),
    'learning to cook on a tight budget': (
        'Build meals around cheap staples: rice, beans, lentils, eggs, oats and seasonal produce.',
        'Cook large batches and freeze portions.'),
    'getting back into reading books': (
        'Pick a book you are excited about, not one you feel you should read.',
        'Read ten pages a day at a fixed time, such as before bed.'),
    'sharing a small apartment with a roommate': (
        'Agree early on chores, guests, quiet hours and how to split bills.',
        'Bring up small annoyances calmly before they become big ones.'),
    'preparing for a camping trip in the rain': (
        'Bring a tarp to pitch over the tent and a waterproof layer for everyone.',
        'Pack spare dry clothes in sealed bags.'),
    'adopting an older rescue dog': (
        'Give the dog a quiet space and a few days to settle before meeting lots of people.',
        'Keep a steady routine for walks and meals, and book a vet check early.'),
    'staying focused during long online classes': (
        'Take notes by hand; it keeps you engaged.',
        'Close other tabs and stand up to stretch in every break.'),
    'choosing a laptop for school': (
        'Check what software your courses need, then look for good battery life and weight.',
        'For most students, 16 GB of memory and a solid-state drive are plenty.'),
    'visiting a country where I do not speak the language': (
        'Learn greetings, please, thank you and numbers, and download an offline translator.',
        'Carry your hotel address written in the local language.'),
}

THANK_YOU = {
    'my neighbor who watered my plants': (
        'Dear neighbor', 'for watering my plants while I was away. They look happier than ever'),
    'a coworker who covered my shift': (
        'Hi', 'for covering my shift on such short notice. You really helped me out'),
    'my aunt for a birthday gift': (
        'Dear Aunt', 'for the lovely birthday gift. It was so thoughtful of you'),
    'a teacher who wrote me a reference': (
        'Dear teacher', 'for writing me a reference. I am grateful for your support'),
    'a friend who helped me move': (
        'Hey', 'for spending your whole day helping me move. Dinner is on me'),
    'the nurses who cared for my father': (
        'Dear nurses', 'for the care and kindness you showed my father. It meant the world to '
                       'our family'),
}

BIRTHDAY = {
    'my grandfather who loves fishing': 'Happy birthday, Grandpa! I hope the fish are biting '
                                        'and the weather is calm all year.',
    'a coworker who runs marathons': 'Happy birthday! Here is to another year of personal '
                                     'bests, on the road and off it.',
    'my sister who is turning thirty': 'Happy thirtieth, sis! Thirty looks great on you, and '
                                       'I cannot wait to celebrate.',
    'a neighbor who bakes for everyone': 'Happy birthday! Today someone should bake for you '
                                         'for a change. Thank you for all the treats.',
    'my best friend who just moved abroad': 'Happy birthday! The distance changes nothing. I '
                                            'am raising a glass to you from here.',
    'a teammate who loves board games': 'Happy birthday! May your dice roll high and your '
                                        'strategies all work out this year.',
}

STORY_OPENINGS = {
    'a robot who learns to garden': 'Unit 7 had been built to weld car doors, so the first '
                                    'tomato seedling it touched did not survive.',
    'a detective who is afraid of the dark': 'Detective Mara Quill solved every case before '
                                             'sunset, and nobody at the station knew why.',
    'two rivals stuck in an elevator': 'The elevator stopped between the ninth and tenth '
                                       'floors, and Dana realized she was trapped with the one '
                                       'person who had stolen her promotion.',
    'a town where it never stops snowing': 'In Wintermere the snow had been falling for '
                                           'ninety years, and the children had never seen '
                                           'grass.',
    'a baker who finds a map in a flour sack': 'Luis was halfway through the morning loaves '
                                               'when a folded square of yellowed paper slid out '
                                               'of the flour.',
    'a kid who can talk to pigeons': 'Nobody believed Theo when he said the pigeons had '
                                     'warned him about the storm, until the storm came.',
}

HAIKU = ('{x} —\nthe world pauses, listening\nto one quiet breath',
         'Slowly, {x}\nsettles over everything;\nthe day holds its breath')
POEM = ('I think about {x} today,\nhow small things find a way to stay;\n'
        'they hold the hours, bright and plain,\nand come back to us again.',
        'A little song for {x},\nfor all the moments it has kept,\n'
        'for every ordinary day\nthat quietly became a gift.')
